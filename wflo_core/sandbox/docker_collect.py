"""After the code has run in a container: stop what it left running, read what it used, fetch its files.

One ``exec`` of a small collector script does all three inside the container, because only there
are the tmpfs work dir and the container's own cgroup files visible (read-only) on every engine,
local or remote. The collector's output crosses back as untrusted data: a capped tar on stdout
(parsed by :func:`~wflo_core.sandbox.files.untar_files`) and one JSON object on stderr.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import docker

from wflo_core.sandbox.files import untar_files
from wflo_core.sandbox.output import CappedBuffer
from wflo_core.sandbox.policy import MiB

_COLLECTOR = """import json, os, signal, stat, sys, tarfile
try:
    os.kill(-1, signal.SIGKILL)  # every process of the sandbox user except this one and PID 1
except OSError:
    pass
def first(*paths):
    for path in paths:
        try:
            with open(path) as fh:
                return fh.read()
        except OSError:
            pass
    return ""
def field(text, key):
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None
cg = "/sys/fs/cgroup/"
cpu_ns = first(cg + "cpuacct/cpuacct.usage").strip()
cpu_us = field(first(cg + "cpu.stat"), "usage_usec")
peak = first(cg + "memory/memory.max_usage_in_bytes", cg + "memory.peak").strip()
ooms = field(first(cg + "memory/memory.oom_control", cg + "memory.events"), "oom_kill")
json.dump({"cpu_ms": int(cpu_ns) // 1000000 if cpu_ns.isdigit() else (cpu_us // 1000 if cpu_us else None),
           "peak_memory_bytes": int(peak) if peak.isdigit() else None, "oom_killed": bool(ooms)}, sys.stderr)
budget, skipped = int(sys.argv[1]), False
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as archive:
    for top, dirs, names in os.walk("/work"):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(top, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            if info.st_size > budget:
                skipped = True
                continue
            budget -= info.st_size
            archive.add(path, arcname=os.path.relpath(path, "/work"), recursive=False)
sys.exit(3 if skipped else 0)
"""


@dataclass
class Collected:
    """What the collector found; None where the container's cgroup files did not say."""

    cpu_ms: int | None = None
    peak_memory_bytes: int | None = None
    oom_killed: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    files_truncated: bool = False


def collect(api: docker.APIClient, container_id: str, *, max_files_bytes: int) -> Collected:
    """Run the collector in the container; an empty result if it cannot start (e.g. pids exhausted)."""
    try:
        command = ["python3", "-I", "-S", "-c", _COLLECTOR, str(max_files_bytes)]
        exec_id = api.exec_create(container_id, command)["Id"]
        archive, report = CappedBuffer(max_files_bytes + max_files_bytes // 4 + MiB), CappedBuffer(4096)
        for out, err in api.exec_start(exec_id, stream=True, demux=True):
            if (out and archive.write(out)) or (err and report.write(err)):
                break
        exit_code = api.exec_inspect(exec_id)["ExitCode"]
    except docker.errors.APIError:
        return Collected()
    usage: dict = {}
    with contextlib.suppress(ValueError):
        usage = json.loads(report.getvalue() or b"{}")
    files, truncated = untar_files(archive.getvalue(), max_total_bytes=max_files_bytes)
    return Collected(
        cpu_ms=_count(usage.get("cpu_ms")),
        peak_memory_bytes=_count(usage.get("peak_memory_bytes")),
        oom_killed=usage.get("oom_killed") is True,
        files=files,
        files_truncated=truncated or archive.truncated or exit_code == 3,
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
