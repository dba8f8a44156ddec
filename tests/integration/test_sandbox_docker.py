"""Docker backend specifics: the container's hardening as the engine sees it, the warm pool, and
cleanup when the caller is killed mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import docker
import pytest

from tests.integration.sandbox_backends import assert_nothing_left
from wflo_core.errors import SandboxError
from wflo_core.sandbox import KilledReason, SandboxLimits
from wflo_core.sandbox.docker import DockerSandbox
from wflo_core.sandbox.docker_labels import DEADLINE_LABEL, LABEL, OWNER_LABEL

pytestmark = pytest.mark.integration


@pytest.fixture
def client(docker_host: str) -> Iterator[docker.DockerClient]:
    engine = docker.DockerClient(base_url=docker_host)
    yield engine
    engine.close()


def _owned_by(client: docker.DockerClient, pid: int) -> list:
    found = client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
    return [c for c in found if c.labels.get(OWNER_LABEL, "").endswith(f":{pid}")]


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_container_is_hardened(docker_host: str, sandbox_image: str, client: docker.DockerClient) -> None:
    limits = SandboxLimits(
        timeout_seconds=20, memory_bytes=128 * 2**20, pids=40, cpus=0.5, workdir_bytes=8 * 2**20
    )
    with DockerSandbox(image=sandbox_image, docker_host=docker_host) as sandbox:
        worker = threading.Thread(
            target=sandbox.run, args=("import time; time.sleep(3)",), kwargs={"limits": limits}
        )
        worker.start()
        container = _wait_for(lambda: _owned_by(client, os.getpid()))[0]
        attrs = client.api.inspect_container(container.id)
        worker.join()
        host = attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["NetworkMode"] == "none" and host["IpcMode"] == "none"
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 40 and host["Memory"] == 128 * 2**20 and host["MemorySwap"] == 128 * 2**20
        assert host["NanoCpus"] == 500_000_000 and host["AutoRemove"] is True
        assert "size=8388608" in host["Tmpfs"]["/work"]
        assert attrs["Config"]["User"] == "65534:65534"
        assert attrs["Config"]["Env"] and not any("API_KEY" in e for e in attrs["Config"]["Env"])
        assert_nothing_left(sandbox)


def test_warm_pool_serves_fresh_containers_and_is_removed_on_close(
    docker_host: str, sandbox_image: str, client: docker.DockerClient
) -> None:
    sandbox = DockerSandbox(image=sandbox_image, docker_host=docker_host, warm_pool_size=2)
    try:
        assert sandbox.pool is not None and sandbox.pool.idle_count() == 2
        _wait_for(lambda: len(_owned_by(client, os.getpid())) == 2)  # earlier tests' may still be going
        probe = "import os\nprint(os.path.exists('left.txt'))\nopen('left.txt', 'w').write('x')\n"
        outputs = [sandbox.run(probe, timeout=20).stdout for _ in range(4)]
        assert outputs == [b"False\n"] * 4  # never a container a previous run used
        custom = sandbox.run("print(2)", limits=SandboxLimits(timeout_seconds=20, pids=20))
        assert custom.ok and custom.stdout == b"2\n"  # other limits: a cold container
        _wait_for(lambda: sandbox.pool.idle_count() == 2)
    finally:
        sandbox.close()
    assert_nothing_left(sandbox)


CALLER = """
import sys
from wflo_core.sandbox.docker import DockerSandbox
sandbox = DockerSandbox(image=sys.argv[1], docker_host=sys.argv[2], warm_pool_size=2)
print("running", flush=True)
sandbox.run("import time; time.sleep(600)", timeout=120)
"""


def test_containers_of_a_killed_caller_end_with_it(
    docker_host: str, sandbox_image: str, client: docker.DockerClient
) -> None:
    caller = subprocess.Popen(
        [sys.executable, "-c", CALLER, sandbox_image, docker_host], stdout=subprocess.PIPE, text=True
    )
    try:
        assert caller.stdout and caller.stdout.readline().strip() == "running"
        # one container runs the code, one waits in the pool
        _wait_for(lambda: len([c for c in _owned_by(client, caller.pid) if c.status == "running"]) == 2)
        time.sleep(0.5)
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait()
    # Nobody reaps them: each runner sees its stdin close with the dead caller's connection and
    # exits, and the engine auto-removes the container.
    _wait_for(lambda: not _owned_by(client, caller.pid), timeout=15)


def test_containers_a_dead_caller_never_attached_to_are_reaped(
    docker_host: str, sandbox_image: str, client: docker.DockerClient
) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    labels = {
        LABEL: "1",
        OWNER_LABEL: f"{socket.gethostname()}:{finished.pid}",
        DEADLINE_LABEL: str(int(time.time()) + 600),
    }
    stray = client.containers.run(
        sandbox_image, ["sleep", "600"], detach=True, network_mode="none", labels=labels, auto_remove=True
    )
    try:
        assert stray.id in [c.id for c in _owned_by(client, finished.pid)]  # the engine keeps it
        DockerSandbox(image=sandbox_image, docker_host=docker_host).close()  # starting a sandbox reaps
        _wait_for(lambda: not _owned_by(client, finished.pid), timeout=15)
    finally:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            stray.remove(force=True)


def test_missing_image_or_engine_is_a_clear_error(docker_host: str) -> None:
    with pytest.raises(SandboxError, match="build_sandbox_image.sh"):
        DockerSandbox(image="wflo-no-such-image:0", docker_host=docker_host)
    with pytest.raises(SandboxError, match="not reachable"):
        DockerSandbox(docker_host="unix:///nonexistent/docker.sock")


def test_a_container_killed_under_the_code_is_reported_promptly(
    docker_host: str, sandbox_image: str, client: docker.DockerClient
) -> None:
    with DockerSandbox(image=sandbox_image, docker_host=docker_host) as sandbox:
        box: dict = {}
        worker = threading.Thread(
            target=lambda: box.setdefault("r", sandbox.run("import time; time.sleep(120)"))
        )
        worker.start()
        container = _wait_for(lambda: [c for c in _owned_by(client, os.getpid()) if c.status == "running"])[0]
        time.sleep(0.5)
        started = time.monotonic()
        container.kill()
        worker.join(30)
        assert time.monotonic() - started < 5
        assert box["r"].killed_reason is KilledReason.CONTAINER_DIED
        assert_nothing_left(sandbox)


WHICH_CONTAINER = "print(open('/proc/self/cgroup').read().split('/docker/')[1].split()[0])"


def test_a_pooled_container_serves_one_job_and_is_gone(
    docker_host: str, sandbox_image: str, client: docker.DockerClient
) -> None:
    with DockerSandbox(image=sandbox_image, docker_host=docker_host, warm_pool_size=1) as sandbox:
        (waiting,) = [c.id for c in _owned_by(client, os.getpid())]
        first = sandbox.run(WHICH_CONTAINER, timeout=20)
        assert first.ok and first.stdout_text.strip() == waiting  # the job ran in the pooled container
        # its runner exits after that one job, and the container removes itself
        _wait_for(lambda: waiting not in [c.id for c in _owned_by(client, os.getpid())], timeout=15)
        _wait_for(lambda: sandbox.pool is not None and sandbox.pool.idle_count() == 1)
        second = sandbox.run(WHICH_CONTAINER, timeout=20)
        assert second.ok and second.stdout_text.strip() not in ("", waiting)
        assert sandbox.pool is not None and sandbox.pool.served == 2


REACH_THE_RUNNER = r"""
import ctypes, json, os, signal
out = {}
libc = ctypes.CDLL(None, use_errno=True)
out["ptrace"] = "attached" if libc.ptrace(16, 1, 0, 0) == 0 else "blocked: " + os.strerror(ctypes.get_errno())
for path in ("/proc/1/fd/1", "/proc/1/fd/0", "/proc/1/environ", "/proc/1/mem"):
    try:
        open(path, "wb" if "/fd/" in path else "rb").close(); out[path] = "opened"
    except OSError as err:
        out[path] = "blocked: " + type(err).__name__
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGSTOP):
    os.kill(1, sig)  # PID 1 of the container: ignored unless it has a handler
print(json.dumps(out))
"""


@pytest.mark.parametrize("pool_size", [0, 1], ids=["cold", "pool"])
def test_the_job_cannot_reach_its_runner(docker_host: str, sandbox_image: str, pool_size: int) -> None:
    """The runner shares the container and uid with the job; it must stay out of the job's reach."""
    with DockerSandbox(image=sandbox_image, docker_host=docker_host, warm_pool_size=pool_size) as sandbox:
        result = sandbox.run(REACH_THE_RUNNER, timeout=20)
        assert result.ok and result.killed_reason is None, (result.killed_reason, result.stderr_text)
        seen = json.loads(result.stdout_text)
        assert all(value.startswith("blocked") for value in seen.values()), seen
        assert result.files_out["main.py"]  # the runner still collected and reported after the signals
    assert_nothing_left(sandbox)
