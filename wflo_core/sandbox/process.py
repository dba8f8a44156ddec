"""The process backend: bubblewrap namespaces + cgroups/rlimits, no container engine needed.

Each run gets fresh user, pid, network (loopback only, down), IPC, UTS, mount and cgroup
namespaces from bubblewrap, a root filesystem holding only the host's ``/usr`` read-only plus a
private ``/proc`` and ``/dev``, an empty environment, and a ``/work`` directory that is the only
writable place. When the caller is root (the CI machines, a run container) it also gets:

* its own unprivileged uid (so RLIMIT_NPROC counts only its processes and it can signal nothing
  outside the sandbox),
* a size-limited tmpfs as the work dir (disk fill stops at ``workdir_bytes``),
* cgroup v1 groups: memory (OOM kill, reported as ``memory``), pids and CPU share, with exact CPU
  time and peak memory.

Setting a sandbox up (uid, tmpfs, cgroups, namespaces, mounts) costs about as much as starting
Python, so by default two are kept set up ahead: each one's shell waits inside for "go", and the run
only writes its files, limits and launch script. A replacement is set up in the background right
after each run; with two ahead, a run that follows the previous one at once takes the second while
the first's replacement is set up (with one, it would wait for that setup). What a waiting sandbox
holds: three sleeping processes (bubblewrap, its init, the shell), an empty tmpfs and four empty
cgroups. Each sandbox serves exactly one run and is then torn down; ``warm_pool_size=0`` sets each
one up on its run's path instead.

What it does NOT guarantee (use :class:`~wflo_core.sandbox.docker.DockerSandbox`, ideally with
gVisor, where these matter):

* It shares the host kernel and installs no seccomp filter: a kernel bug reachable from an
  unprivileged user namespace is an escape.
* The host's ``/usr`` is readable inside (no secrets belong there, but it is the host's).
* Without root, or without cgroup v1 controllers (cgroup v2 is not used yet): memory is limited
  by RLIMIT_AS only (a ``MemoryError``, not reported as ``memory``); the pid limit is
  RLIMIT_NPROC, which counts every process of the calling user, so it is set to the user's
  current count plus ``pids`` (racy if the user starts other processes meanwhile); the work dir is a plain
  directory limited per file (RLIMIT_FSIZE) but not in total; there is no CPU-share limit; and
  ``cpu_ms``/``peak_memory_bytes`` are None (bwrap's inner processes escape the launcher's rusage).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast, overload

from wflo_core.errors import ConfigError, SandboxError
from wflo_core.sandbox.base import WORKDIR, Sandbox, SandboxJob
from wflo_core.sandbox.cgroups import RunCgroup
from wflo_core.sandbox.files import read_files, write_files
from wflo_core.sandbox.output import CappedBuffer
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import KilledReason, SandboxResult

#: Per-run uids are drawn from this range, which no real account uses.
UID_RANGE = (300_000, 365_535)
_SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": WORKDIR,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MNT_DETACH = 2, 4, 32, 2
#: Inside the sandbox, read-only: the directory holding the script that starts the job.
_LAUNCH_DIR = "/.wflo"
#: The sandbox's first process once bubblewrap has set it up. Its stdin is a socket to the host:
#: it says it is ready, waits for "go", puts /dev/null on stdin and sources the job's launch script
#: (limits, then ``exec`` of the job), so the job is started by this very process.
_WAIT_FOR_JOB = f'echo >&0 && read -r go && [ "$go" = go ] && exec </dev/null && . {_LAUNCH_DIR}/run'
_SETUP_SECONDS = 30
#: Sandboxes kept set up ahead by default: two, so back-to-back runs never wait for a setup.
DEFAULT_WARM_POOL = 2


@dataclass
class _Slot:
    """A sandbox set up for exactly one run: its uid, work dir, cgroups and waiting bubblewrap."""

    name: str
    dir: Path
    uid: int | None
    cgroup: RunCgroup | None
    #: The work dir tmpfs's size and the cgroup limits (memory, pids, cpus) as last written.
    workdir_bytes: int
    cgroup_limits: tuple[int, int, float]
    proc: subprocess.Popen[bytes]
    #: The host's end of the waiting shell's stdin; writing "go" starts the job.
    control: socket.socket

    @property
    def work(self) -> Path:
        return self.dir / "work"


class ProcessSandbox(Sandbox):
    """Runs code under bubblewrap on this host (the embedded default).

    ``warm_pool_size`` sandboxes (default 2) are kept set up ahead: uid, tmpfs, cgroups,
    namespaces and mounts done, a shell inside waiting for its job. A run then only writes its
    files, limits and launch script and says "go"; a replacement is set up in the background
    right after. Each sandbox serves exactly one run and is torn down after it. With 0, each
    run's sandbox is set up when the run starts.
    """

    name: Literal["process"] = "process"

    def __init__(
        self, *, limits: SandboxLimits | None = None, base_dir: Path | None = None,
        warm_pool_size: int = DEFAULT_WARM_POOL,
    ) -> None:
        super().__init__(limits=limits)
        if warm_pool_size < 0:
            raise ConfigError(f"warm_pool_size={warm_pool_size} must be 0 or more (0 = no sandbox set up ahead)")
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxError(
                "the process sandbox needs bubblewrap: install it with `apt-get install bubblewrap` "
                "(or set WFLO_SANDBOX_BACKEND=docker)"
            )
        self.is_root = os.geteuid() == 0
        self.use_cgroups = RunCgroup.available()
        self._nproc_flag = _nproc_flag()
        self.base_dir = base_dir or Path(tempfile.gettempdir()) / f"wflo-sandbox-{os.geteuid()}"
        self.base_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        reap_stale_runs(self.base_dir)
        self.warm_pool_size = warm_pool_size
        #: How many runs were served by a sandbox set up ahead of them.
        self.warm_runs = 0
        self._ready: deque[Future[_Slot]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        # Sandboxes are set up, and used ones removed, in one long-lived thread: bubblewrap dies
        # with the thread that started it (--die-with-parent), so that thread must outlive them.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wflo-sandbox-process")
        # Dropped or left open at exit: the sandboxes set up ahead are still torn down.
        self._finalizer = weakref.finalize(self, _discard_ready, self._ready, self._worker)
        self._refill()

    @property
    def prepared_run(self) -> str | None:
        """The name of the sandbox that waits, set up, for the next run (None while none is ready)."""
        with self._lock:
            upcoming = self._ready[0] if self._ready else None
        return None if upcoming is None else _name_if_set_up(upcoming)

    @property
    def prepared_runs(self) -> list[str]:
        """The names of every sandbox set up and waiting for a run (those still being set up excluded)."""
        with self._lock:
            upcoming = list(self._ready)
        return [name for name in map(_name_if_set_up, upcoming) if name is not None]

    def close(self) -> None:
        """Tear down the sandboxes set up ahead and wait for used ones to be removed."""
        with self._lock:
            self._closed = True
        self._finalizer()
        self._worker.shutdown(wait=True)

    def _execute(self, job: SandboxJob) -> SandboxResult:
        slot = self._take_ready() or self._open_slot(job.limits)
        try:
            return self._run(slot, job)
        finally:
            # Every process of the run is dead here (or the run failed): set the next sandbox up
            # first, then remove this one, both off the caller's path.
            self._refill()
            try:
                self._worker.submit(_discard, slot)
            except RuntimeError:  # closed meanwhile
                _discard(slot)

    def _refill(self) -> None:
        with self._lock:
            while not self._closed and len(self._ready) < self.warm_pool_size:
                try:
                    self._ready.append(self._worker.submit(self._open_slot, self.default_limits))
                except RuntimeError:  # the interpreter is shutting down
                    return

    def _take_ready(self) -> _Slot | None:
        """A sandbox set up ahead (waiting for it if its setup is under way), or None."""
        while True:
            with self._lock:
                if not self._ready:
                    return None
                upcoming = self._ready.popleft()
            try:
                slot = upcoming.result()
            except Exception:  # noqa: BLE001  (setting up again on the caller's path reports it)
                return None
            if slot.proc.poll() is None:
                with self._lock:
                    self.warm_runs += 1
                return slot
            _discard(slot)

    def _open_slot(self, limits: SandboxLimits) -> _Slot:
        """Set up a sandbox (uid, work dir, cgroups, namespaces, mounts) whose shell waits for a job."""
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        run_dir = self.base_dir / name
        (run_dir / "work").mkdir(parents=True, mode=0o711)
        (run_dir / "launch").mkdir(mode=0o755)
        os.chmod(run_dir, 0o711)
        uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0] if self.is_root else None
        cgroup = RunCgroup(name) if self.use_cgroups else None
        host_end, sandbox_end = socket.socketpair()
        try:
            if uid is not None:
                _mount_tmpfs(run_dir / "work", size=limits.workdir_bytes, uid=uid)
            if cgroup is not None:
                cgroup.create(memory_bytes=limits.memory_bytes, pids=limits.pids, cpus=limits.cpus)
            # setpriv, not Popen(user=...): that forks the whole caller instead of a vfork + exec.
            drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
            proc = subprocess.Popen(
                [*drop, *self._bwrap_args(run_dir), "--", "/bin/sh", "-c", _WAIT_FOR_JOB, "wflo-run"],
                stdin=sandbox_end.fileno(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except BaseException:
            host_end.close()
            _remove_parts(run_dir, cgroup, mounted=uid is not None)
            raise
        finally:
            sandbox_end.close()
        limits_written = (limits.memory_bytes, limits.pids, limits.cpus)
        slot = _Slot(name, run_dir, uid, cgroup, limits.workdir_bytes, limits_written, proc, host_end)
        try:
            if cgroup is not None:
                # The first move into a cgroup waits out a kernel grace period (several ms) while
                # bubblewrap sets the sandbox up; whatever it started before the move is moved
                # once the sandbox is ready, when nothing in it runs or forks until "go".
                cgroup.join(proc.pid)
            _wait_until_ready(slot)
            if cgroup is not None:
                _join_all(cgroup, proc.pid)
        except (SandboxError, OSError) as err:
            raise _setup_failed(slot, str(err)) from None
        except BaseException:
            _discard(slot)
            raise
        return slot

    def _bwrap_args(self, run_dir: Path) -> list[str]:
        args = [str(self.bwrap), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64"):
            host = Path("/") / top
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), f"/{top}"]
            elif host.is_dir():
                args += ["--ro-bind", str(host), f"/{top}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--bind", str(run_dir / "work"), WORKDIR, "--chdir", WORKDIR]
        args += ["--ro-bind", str(run_dir / "launch"), _LAUNCH_DIR]
        # Read-only root and /dev (no /dev/shm either): the work dir is the only writable place.
        args += ["--remount-ro", "/dev", "--remount-ro", "/", "--hostname", "sandbox", "--clearenv"]
        for name, value in _SANDBOX_ENV.items():
            args += ["--setenv", name, value]
        return args

    def _run(self, slot: _Slot, job: SandboxJob) -> SandboxResult:
        """Give the waiting sandbox its files, limits and command, release it, and supervise the job."""
        limits = job.limits
        if slot.uid is not None and slot.workdir_bytes != limits.workdir_bytes:
            _remount_tmpfs(slot.work, size=limits.workdir_bytes)  # still empty: any size fits
            slot.workdir_bytes = limits.workdir_bytes
        write_files(slot.work, job.files, uid=slot.uid)
        if slot.cgroup is not None:
            wanted = (limits.memory_bytes, limits.pids, limits.cpus)
            if slot.cgroup_limits != wanted:
                slot.cgroup.set_limits(memory_bytes=limits.memory_bytes, pids=limits.pids, cpus=limits.cpus)
                slot.cgroup_limits = wanted
            slot.cgroup.reset_usage()  # count the job, not the setup
        cpu = limits.effective_cpu_seconds
        nproc = limits.pids if slot.uid is not None else _processes_of(os.getuid()) + limits.pids
        # The job's own shell lowers its limits, then becomes the job (the host may lack
        # CAP_SYS_RESOURCE to set another uid's limits): nothing of the job runs before this.
        ulimits = [
            f"ulimit -S -t {cpu}",
            f"ulimit -H -t {cpu + 1}",
            f"ulimit {self._nproc_flag} {nproc}",
            "ulimit -c 0",
            "ulimit -n 256",
            f"ulimit -f {-(-limits.workdir_bytes // 512)}",
        ]
        if slot.cgroup is None:
            ulimits.append(f"ulimit -v {limits.memory_bytes // 1024}")
        (slot.dir / "launch" / "run").write_text(
            " && ".join(ulimits)
            + ' || { echo "wflo-launch: cannot set the sandbox limits" >&2; exit 125; }\n'
            + f"exec {shlex.join(job.argv)}\n"
        )
        return self._supervise(slot, job)

    def _supervise(self, slot: _Slot, job: SandboxJob) -> SandboxResult:
        limits = job.limits
        proc, cgroup, work = slot.proc, slot.cgroup, slot.work
        stdout, stderr = CappedBuffer(limits.max_output_bytes), CappedBuffer(limits.max_output_bytes)
        killed: KilledReason | None = None
        started = time.monotonic()
        deadline = started + limits.timeout_seconds
        try:
            slot.control.sendall(b"go\n")
        except OSError:
            raise SandboxError("the process sandbox ended before its job could start") from None
        slot.control.close()  # before the job starts: the socket it could find leads nowhere
        assert proc.stdout is not None and proc.stderr is not None  # started with both piped
        try:
            killed = _pump(proc, {proc.stdout: stdout, proc.stderr: stderr}, deadline)
            if killed is not None:
                _kill(proc, cgroup)
            reaped = _reap(proc.pid, deadline)
            if reaped is None:
                killed = KilledReason.TIMEOUT
                _kill(proc, cgroup)
                reaped = _reap(proc.pid, None)
        except BaseException:
            _kill(proc, cgroup)
            proc.returncode = os.waitstatus_to_exitcode(_reap(proc.pid, None))
            raise
        finally:
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        proc.returncode = os.waitstatus_to_exitcode(reaped)
        wall_ms = int((time.monotonic() - started) * 1000)
        exit_code = 128 - proc.returncode if proc.returncode < 0 else proc.returncode
        if exit_code == 125 and stderr.getvalue().startswith(b"wflo-launch:"):
            raise SandboxError(f"the process sandbox could not start: {stderr.getvalue().decode().strip()}")
        if cgroup is not None:
            cgroup.kill_all()
        if killed is None and cgroup is not None and cgroup.oom_killed():
            killed = KilledReason.MEMORY
        if killed is None and exit_code == 128 + signal.SIGXCPU:
            killed = KilledReason.CPU
        files, files_truncated = read_files(work, max_total_bytes=limits.max_files_out_bytes)
        return SandboxResult(
            backend=self.name,
            exit_code=exit_code,
            stdout=stdout.getvalue(),
            stderr=stderr.getvalue(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            files_out=files,
            files_out_truncated=files_truncated,
            wall_ms=wall_ms,
            cpu_ms=cgroup.cpu_ms() if cgroup else None,
            peak_memory_bytes=cgroup.peak_memory_bytes() if cgroup else None,
            killed_reason=killed,
            limits=limits,
        )


def _name_if_set_up(upcoming: Future[_Slot]) -> str | None:
    """The sandbox's name once its setup has finished and succeeded, else None."""
    if not upcoming.done() or upcoming.exception() is not None:
        return None
    return upcoming.result().name


def _wait_until_ready(slot: _Slot) -> None:
    """Wait for the sandbox's shell to say it is set up (SandboxError if it does not)."""
    if not select.select([slot.control], [], [], _SETUP_SECONDS)[0]:
        raise SandboxError(f"the process sandbox did not start within {_SETUP_SECONDS} s")
    if slot.control.recv(1) != b"\n":
        raise SandboxError("the process sandbox could not start")


def _setup_failed(slot: _Slot, problem: str) -> SandboxError:
    """Tear the half-made sandbox down; ``problem`` plus what bubblewrap said about it."""
    _kill(slot.proc, slot.cgroup)
    slot.proc.returncode = os.waitstatus_to_exitcode(_reap(slot.proc.pid, None))
    stderr = slot.proc.stderr
    said = os.read(stderr.fileno(), 2000) if stderr and select.select([stderr], [], [], 1)[0] else b""
    _discard(slot)
    return SandboxError(f"{problem}: {said.decode(errors='replace').strip()}" if said else problem)


def _discard(slot: _Slot) -> None:
    """Kill whatever still runs of a sandbox and remove its work dir, mount and cgroups."""
    proc = slot.proc
    if proc.returncode is None:
        _kill(proc, slot.cgroup)
        proc.returncode = os.waitstatus_to_exitcode(_reap(proc.pid, None))
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    slot.control.close()
    _remove_parts(slot.dir, slot.cgroup, mounted=slot.uid is not None)


def _discard_ready(ready: deque[Future[_Slot]], worker: ThreadPoolExecutor) -> None:
    """Tear down the sandboxes set up ahead (one being set up now first finishes) and stop the worker."""
    while ready:
        upcoming = ready.popleft()
        if not upcoming.cancel():
            with contextlib.suppress(Exception):
                _discard(upcoming.result())
    worker.shutdown(wait=False)


def _pump(proc: subprocess.Popen[bytes], sinks: dict[IO[bytes], CappedBuffer], deadline: float) -> KilledReason | None:
    """Copy both pipes into their capped buffers until EOF, the deadline, or too much output."""
    with selectors.DefaultSelector() as selector:
        for stream in sinks:
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return KilledReason.TIMEOUT
            for key, _ in selector.select(remaining):
                stream = cast(IO[bytes], key.fileobj)  # only the pipes in sinks are registered
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    selector.unregister(stream)
                elif sinks[stream].write(chunk):
                    return KilledReason.OUTPUT_LIMIT
    return None


@overload
def _reap(pid: int, deadline: None) -> int: ...


@overload
def _reap(pid: int, deadline: float) -> int | None: ...


def _reap(pid: int, deadline: float | None) -> int | None:
    """Wait for the launcher; its wait status, or None if it still runs at ``deadline`` (None = block)."""
    try:
        if deadline is not None:
            with _pidfd(pid) as fd:  # readable the moment the process exits
                if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    return None
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None if deadline is not None else 0


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int]:
    fd = os.pidfd_open(pid)
    try:
        yield fd
    finally:
        os.close(fd)


def _remove_parts(run_dir: Path, cgroup: RunCgroup | None, *, mounted: bool) -> None:
    if cgroup is not None:
        cgroup.remove()
    if mounted and os.path.ismount(run_dir / "work"):
        _umount(run_dir / "work")
    shutil.rmtree(run_dir, ignore_errors=True)


def _nproc_flag() -> str:
    """The ``ulimit`` option of /bin/sh for RLIMIT_NPROC: ``-u`` in bash, ``-p`` in dash."""
    return "-u" if subprocess.run(["/bin/sh", "-c", "ulimit -u"], capture_output=True).returncode == 0 else "-p"


def _join_all(cgroup: RunCgroup, pid: int) -> None:
    """Move ``pid`` and all its descendants into ``cgroup`` (SandboxError if any stays out)."""
    tree = _process_tree(pid)
    for missing in sorted(set(tree) - set(cgroup.pids_in_group())):
        cgroup.join(missing)
    if outside := set(tree) - set(cgroup.pids_in_group()):
        raise SandboxError(f"sandbox processes {sorted(outside)} could not join their cgroup")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/PID/task/TID/children."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in os.listdir(f"/proc/{current}/task"):
            with open(f"/proc/{current}/task/{task}/children") as children:
                todo += map(int, children.read().split())
    return tree


def _kill(proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


def _mount_tmpfs(path: Path, *, size: int, uid: int) -> None:
    _mount(path, _MS_NOSUID | _MS_NODEV, f"size={size},uid={uid},gid={uid},mode=0700")


def _remount_tmpfs(path: Path, *, size: int) -> None:
    _mount(path, _MS_REMOUNT | _MS_NOSUID | _MS_NODEV, f"size={size}")


def _mount(path: Path, flags: int, options: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"wflo-sandbox", str(path).encode(), b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"could not mount the sandbox work dir tmpfs at {path}: {os.strerror(err)}")


def _umount(path: Path) -> None:
    ctypes.CDLL(None, use_errno=True).umount2(str(path).encode(), _MNT_DETACH)


def _processes_of(uid: int) -> int:
    """How many processes (threads included, as RLIMIT_NPROC counts them) ``uid`` runs now."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_runs(base_dir: Path) -> list[str]:
    """Remove work dirs, mounts and cgroups of runs whose owning process has died (e.g. SIGKILL)."""
    names = set(RunCgroup.stale_names()) | {p.name for p in base_dir.iterdir() if p.is_dir()}
    reaped = []
    for name in sorted(names):
        owner = name.split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        if RunCgroup.available():
            RunCgroup(name).remove()
        work = base_dir / name / "work"
        if os.path.ismount(work):
            _umount(work)
        shutil.rmtree(base_dir / name, ignore_errors=True)
        reaped.append(name)
    return reaped
