"""Per-run cgroup v1 groups: hard memory, pid and CPU-share limits plus exact usage accounting.

Only root can create them (and only where the v1 controllers are mounted, as on these hosts);
:meth:`RunCgroup.available` tells the process backend whether it can use them or must fall back
to rlimits. Groups live under ``<controller>/wflo-sandbox/<run name>`` so stale ones can be found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "wflo-sandbox"
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
CFS_PERIOD_US = 100_000
#: In /proc/TID/stat flags: the thread has begun to exit.
_PF_EXITING = 0x4


class RunCgroup:
    """The cgroups (one per v1 controller) of one sandboxed run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dirs = {c: CGROUP_ROOT / c / PARENT / name for c in CONTROLLERS}

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and all(
            (CGROUP_ROOT / c / "cgroup.procs").exists() and os.access(CGROUP_ROOT / c, os.W_OK)
            for c in CONTROLLERS
        )

    @classmethod
    def stale_names(cls) -> list[str]:
        parent = CGROUP_ROOT / "pids" / PARENT
        return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []

    def create(self) -> None:
        """Make the (empty, unlimited) groups; :meth:`set_limits` must follow before any job runs."""
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)

    def set_limits(self, *, memory_bytes: int, pids: int, cpus: float) -> None:
        self._write("memory", "memory.limit_in_bytes", memory_bytes)
        with contextlib.suppress(FileNotFoundError):  # no swap accounting configured: nothing to cap
            self._write("memory", "memory.memsw.limit_in_bytes", memory_bytes)
        self._write("pids", "pids.max", pids)
        self._write("cpu", "cpu.cfs_period_us", CFS_PERIOD_US)
        self._write("cpu", "cpu.cfs_quota_us", max(1000, int(cpus * CFS_PERIOD_US)))

    def reset_usage(self) -> None:
        """Zero the CPU time and peak memory counters (v1 allows writing 0 to both)."""
        self._write("cpuacct", "cpuacct.usage", 0)
        self._write("memory", "memory.max_usage_in_bytes", 0)

    def tasks_files(self) -> list[str]:
        """Each group's v1 ``tasks`` file, where a process writes 0 to move itself in.

        Writing 0 moves the writing thread alone, which the kernel does without its global
        threadgroup lock; a move by pid (``cgroup.procs``) takes that lock and first waits out an
        RCU grace period (several ms, tens under load). A single-threaded process that moves
        itself before it execs bubblewrap has the whole sandbox born in the groups.
        """
        return [str(path / "tasks") for path in self.dirs.values()]

    def holds(self, pid: int) -> bool:
        """Whether process ``pid`` is in every controller's group."""
        try:
            return all(str(pid) in (path / "cgroup.procs").read_text().split() for path in self.dirs.values())
        except OSError:
            return False

    def pids_in_group(self) -> list[int]:
        try:
            text = (self.dirs["pids"] / "cgroup.procs").read_text()
        except OSError:  # gone, or being removed (ENODEV)
            return []
        return [int(line) for line in text.split()]

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the group until it is empty (forks race, so repeat)."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids_in_group()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)

    def stop_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the group until each of its threads is exiting.

        An exiting thread runs no code of its own any more (the kernel marks it as the exit
        begins), so nothing of the run can act after this returns; the kernel's own part of the
        exit (e.g. tearing down the namespaces the sandbox's init held) is not waited for, unlike
        in :meth:`kill_all`.
        """
        deadline = time.monotonic() + timeout
        while (running := [tid for tid in self._threads() if not _exiting(tid)]) and time.monotonic() < deadline:
            for tid in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(tid, signal.SIGKILL)  # a thread's id names its whole process here
            time.sleep(0.001)

    def _threads(self) -> list[int]:
        try:
            return [int(tid) for tid in (self.dirs["pids"] / "tasks").read_text().split()]
        except OSError:  # gone, or being removed (ENODEV)
            return []

    def cpu_ms(self) -> int | None:
        return _int_or_none(self._read("cpuacct", "cpuacct.usage"), 1_000_000)

    def peak_memory_bytes(self) -> int | None:
        return _int_or_none(self._read("memory", "memory.max_usage_in_bytes"), 1)

    def oom_killed(self) -> bool:
        for line in self._read("memory", "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value) > 0
        return False

    def remove(self) -> None:
        """Kill what is left and delete the groups (an rmdir of a group with tasks fails)."""
        self.kill_all()
        for path in self.dirs.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # exiting tasks still charged for a moment
                    time.sleep(0.02)

    def _write(self, controller: str, filename: str, value: int) -> None:
        (self.dirs[controller] / filename).write_text(str(value))

    def _read(self, controller: str, filename: str) -> str:
        try:
            return (self.dirs[controller] / filename).read_text()
        except OSError:
            return ""


def _exiting(tid: int) -> bool:
    """Whether thread ``tid`` is gone, a zombie, or has begun to exit (PF_EXITING in its flags)."""
    try:
        with open(f"/proc/{tid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)


def _int_or_none(text: str, divisor: int) -> int | None:
    text = text.strip()
    return int(text) // divisor if text.isdigit() else None
