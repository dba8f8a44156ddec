"""Process backend specifics: per-run uid and cgroups, and cleanup when the caller is killed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.sandbox_backends import assert_nothing_left
from wflo_core.errors import SandboxError
from wflo_core.sandbox import SandboxLimits
from wflo_core.sandbox.cgroups import RunCgroup
from wflo_core.sandbox.process import UID_RANGE, ProcessSandbox

pytestmark = pytest.mark.integration


def _groups_of(pid: int) -> list[str]:
    return [name for name in RunCgroup.stale_names() if name.startswith(f"{pid}-")]


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("warm_pool_size", [0, 1])
def test_each_run_gets_its_own_uid_and_cgroup_limits(bubblewrap: str, warm_pool_size: int) -> None:
    """Cold, the limits are written before bwrap's processes join the group; warm, at release."""
    sandbox = ProcessSandbox(warm_pool_size=warm_pool_size)
    assert sandbox.is_root and sandbox.use_cgroups, "the CI machines run as root with cgroup v1"
    uids = {int(sandbox.run("import os; print(os.getuid())", timeout=20).stdout) for _ in range(3)}
    assert len(uids) == 3 and all(UID_RANGE[0] <= uid <= UID_RANGE[1] for uid in uids)
    limits = SandboxLimits(timeout_seconds=20, memory_bytes=64 * 2**20, pids=12, cpus=0.25)
    worker = threading.Thread(
        target=sandbox.run, args=("import time; time.sleep(2)",), kwargs={"limits": limits}
    )
    worker.start()

    def running_with_limits() -> list[str]:
        return [
            n
            for n in _groups_of(os.getpid())
            if RunCgroup(n).pids_in_group() and (RunCgroup(n).dirs["pids"] / "pids.max").read_text().strip() == "12"
        ]

    group = RunCgroup(_wait_for(running_with_limits)[0])
    assert (group.dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(64 * 2**20)
    assert (group.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "25000"
    worker.join()
    assert sandbox.warm_runs == (4 if warm_pool_size else 0)
    sandbox.close()
    assert_nothing_left(sandbox)


def _ready(sandbox: ProcessSandbox) -> str:
    return _wait_for(lambda: sandbox.prepared_run)


LOOK_AROUND = """
import json, os
print(json.dumps({"uid": os.getuid(), "files": sorted(os.listdir(".")),
                  "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
"""


def test_a_sandbox_set_up_ahead_serves_one_run_only(bubblewrap: str) -> None:
    """What a run leaves (files, a process) never reaches the next run: each gets a fresh sandbox."""
    with ProcessSandbox() as sandbox:
        first_name = _ready(sandbox)
        leave = "import subprocess\nopen('secret.txt', 'w').write('run 1')\n"
        leave += "subprocess.Popen(['sleep', '60'], start_new_session=True)\n" + LOOK_AROUND
        first = sandbox.run(leave, timeout=20)
        assert first.ok and first.files_out["secret.txt"] == b"run 1", first.stderr_text
        second_name = _ready(sandbox)
        second = sandbox.run(LOOK_AROUND, timeout=20)
        assert second.ok, second.stderr_text
        before, after = json.loads(first.stdout), json.loads(second.stdout)
        assert second_name != first_name and sandbox.warm_runs == 2
        assert after["files"] == ["main.py"] and "secret.txt" not in second.files_out
        assert after["uid"] != before["uid"]
        assert len(after["pids"]) <= 3, f"run 1's sleeper is visible to run 2: {after['pids']}"
        _wait_for(lambda: not (sandbox.base_dir / first_name).exists())
    assert_nothing_left(sandbox)


def test_a_sandbox_set_up_and_never_used_is_torn_down_on_close(bubblewrap: str) -> None:
    sandbox = ProcessSandbox(warm_pool_size=2)
    _wait_for(lambda: len(sandbox.prepared_runs) == 2)
    names = sandbox.prepared_runs
    assert len(set(names)) == 2
    groups = [RunCgroup(name) for name in names]
    assert all(len(g.pids_in_group()) == 3 for g in groups)  # bwrap, its init, the waiting shell
    assert all((sandbox.base_dir / name / "work").is_mount() for name in names)
    sandbox.close()
    assert not any(g.dirs["pids"].exists() for g in groups)
    assert not any((sandbox.base_dir / name).exists() for name in names)
    assert_nothing_left(sandbox)


ABANDON = """
from wflo_core.sandbox.process import ProcessSandbox
sandbox = ProcessSandbox()
sandbox.run("print(1)")
while len(sandbox.prepared_runs) < sandbox.warm_pool_size:
    pass
print(" ".join(sandbox.prepared_runs), flush=True)
"""


def test_a_sandbox_left_open_at_exit_is_torn_down(bubblewrap: str) -> None:
    """A caller that never closes its sandbox still leaves no mount, cgroup or process behind."""
    done = subprocess.run([sys.executable, "-c", ABANDON], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    names = done.stdout.split()
    assert len(names) == 2  # the default: two set up ahead
    for name in names:
        work = Path(tempfile.gettempdir()) / f"wflo-sandbox-{os.geteuid()}" / name
        assert not RunCgroup(name).dirs["pids"].exists() and not work.exists()


def test_a_failing_setup_is_a_clear_error(bubblewrap: str) -> None:
    """A bubblewrap that cannot set up says why, and the run raises that instead of a result."""
    shelf = Path(tempfile.mkdtemp(prefix="wflo-broken-bwrap-", dir="/tmp"))  # the sandbox uid can exec it
    shelf.chmod(0o755)
    broken = shelf / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: No space left on device' >&2\nexit 1\n")
    broken.chmod(0o755)
    with ProcessSandbox(warm_pool_size=1) as sandbox, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, shelf)
        _ready(sandbox)
        sandbox.bwrap = str(broken)
        assert sandbox.run("print(1)").ok  # the sandbox set up before is still good
        with pytest.raises(SandboxError, match="could not start: bwrap: Creating new namespace failed"):
            sandbox.run("print(1)")
    assert_nothing_left(sandbox)


CALLER = """
from wflo_core.sandbox.process import ProcessSandbox
sandbox = ProcessSandbox()
print("running", flush=True)
sandbox.run("import os, time\\nos.fork()\\ntime.sleep(600)", timeout=600)
"""


def test_processes_of_a_killed_caller_die_and_are_reaped(bubblewrap: str) -> None:
    caller = subprocess.Popen([sys.executable, "-c", CALLER], stdout=subprocess.PIPE, text=True)
    try:
        assert caller.stdout and caller.stdout.readline().strip() == "running"
        name = _wait_for(lambda: _groups_of(caller.pid))[0]
        group = RunCgroup(name)
        _wait_for(lambda: len(group.pids_in_group()) >= 3)  # bwrap init, the code, its fork
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    _wait_for(lambda: not group.pids_in_group(), timeout=10)  # --die-with-parent takes them all down
    work = Path(tempfile.gettempdir()) / f"wflo-sandbox-{os.geteuid()}" / name / "work"
    assert group.dirs["pids"].exists() and work.is_mount()  # what a dead caller leaves ...
    ProcessSandbox()  # ... until the next sandbox starts
    assert not group.dirs["pids"].exists() and not work.exists()


def test_missing_bubblewrap_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        ProcessSandbox()


UNPRIVILEGED = """
import json
from wflo_core.sandbox import SandboxLimits
from wflo_core.sandbox.process import ProcessSandbox
sandbox = ProcessSandbox()
limits = SandboxLimits(timeout_seconds=20, cpu_seconds=1, memory_bytes=128 * 2**20)
runs = {name: sandbox.run(code, limits=limits) for name, code in {
    "env": "import os; print(os.getuid(), sorted(os.environ))",
    "memory": "x = bytearray(512 * 2**20)",
    "net": "import socket; socket.create_connection(('127.0.0.1', PORT), timeout=2)",
    "cpu": "while True: pass",
}.items()}
print(json.dumps({"root": sandbox.is_root, "cgroups": sandbox.use_cgroups, **{
    name: [r.exit_code, r.killed_reason, r.stdout_text, r.stderr_text[-200:]] for name, r in runs.items()}}))
"""


def test_unprivileged_caller_gets_the_documented_fallback(bubblewrap: str, redis_url: str) -> None:
    """Run as uid 65534 (no cgroups, no tmpfs, rlimits only), as on a developer laptop.

    The checkout and its venv may sit in a private directory (CI clones into mode-0700 dirs), out
    of nobody's reach, so the packages the sandbox imports are copied into a world-readable
    directory first; Debian's /usr/bin/python3 (same 3.11 ABI as the venv) runs the code there.
    """
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    with readable_copy_of_imports("wflo_core.sandbox.process") as site:
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                UNPRIVILEGED.replace("PORT", port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/tmp",
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": "/tmp",
                "PYTHONPATH": str(site),
                "OPENAI_API_KEY": "sk-canary-unprivileged",
            },
        )
    assert done.returncode == 0, done.stderr[-500:]
    seen = json.loads(done.stdout)
    assert (seen["root"], seen["cgroups"]) == (False, False)
    assert (
        seen["env"][0] == 0 and seen["env"][2].startswith("65534 ") and "OPENAI_API_KEY" not in seen["env"][2]
    )
    assert seen["memory"][0] == 1 and "MemoryError" in seen["memory"][3]  # RLIMIT_AS, not an OOM kill
    assert seen["net"][0] == 1 and "Error" in seen["net"][3]  # no route to the host's redis
    assert seen["cpu"][:2] == [152, "cpu"]


# Prints the file of every top-level non-stdlib module that importing the named module loads.
_IMPORTED_ROOTS = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
tops = {name.split(".")[0] for name in set(sys.modules) - before} - set(sys.stdlib_module_names)
print(json.dumps(sorted(f for f in (getattr(sys.modules.get(t), "__file__", None) for t in tops) if f)))
"""


@contextlib.contextmanager
def readable_copy_of_imports(module: str) -> Iterator[Path]:
    """A world-readable directory holding every package that importing ``module`` loads."""
    files = json.loads(
        subprocess.run(
            [sys.executable, "-c", _IMPORTED_ROOTS, module], capture_output=True, text=True, check=True
        ).stdout
    )
    site = Path(tempfile.mkdtemp(prefix="wflo-readable-site-", dir="/tmp"))
    try:
        site.chmod(0o755)
        for file in map(Path, files):
            if file.name == "__init__.py":
                shutil.copytree(file.parent, site / file.parent.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(file, site / file.name)
        for path in site.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644 | (path.stat().st_mode & 0o111))
        yield site
    finally:
        shutil.rmtree(site, ignore_errors=True)
