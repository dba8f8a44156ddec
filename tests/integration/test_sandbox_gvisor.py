"""The Docker backend under gVisor (``runtime="runsc"``): the code meets gVisor's kernel, not the host's.

gVisor enforces memory and the pid limit by ending the whole sandbox and ignores RLIMIT_CPU, so a
memory bomb is reported as ``memory``, a fork bomb as whichever limit it hits first and a CPU
spin as ``timeout``; all are contained. The memory and pids limits also cover gVisor's own Sentry
and gofer (threads count as pids), so they must be larger than under runc (~256 pids).
The harness registers Debian's ``runsc`` with the test dockerd (``/etc/docker/daemon.json`` +
SIGHUP, which dockerd reloads without restarting).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests import services
from tests.integration.sandbox_backends import assert_nothing_left
from wflo_core.sandbox import KilledReason, SandboxLimits
from wflo_core.sandbox.docker import DockerSandbox

pytestmark = pytest.mark.integration

DAEMON_JSON = Path("/etc/docker/daemon.json")


@pytest.fixture(scope="module")
def gvisor_runtime(docker_host: str) -> str:
    """``runsc`` registered with the test dockerd (installed with apt if missing)."""
    client = docker.DockerClient(base_url=docker_host)
    try:
        if "runsc" not in client.info().get("Runtimes", {}):
            if docker_host != f"unix://{services.DOCKER_SOCKET}":
                pytest.fail(f"the engine at {docker_host} has no runsc runtime; register gVisor there")
            if not Path("/usr/bin/runsc").exists():
                services.apt_install("runsc")
            config = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
            # --network=none: runsc refuses to start in the root network namespace otherwise.
            config.setdefault("runtimes", {})["runsc"] = {
                "path": "/usr/bin/runsc",
                "runtimeArgs": ["--network=none"],
            }
            DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
            DAEMON_JSON.write_text(json.dumps(config, indent=2))
            pid = int((services.DOCKER_SOCKET.parent / "dockerd.pid").read_text())
            os.kill(pid, signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "runsc" not in client.info().get("Runtimes", {}):
                assert time.monotonic() < deadline, "dockerd did not pick up the runsc runtime after SIGHUP"
                time.sleep(0.2)
    except services.ServiceError as err:
        pytest.fail(f"gVisor could not be installed: {err}", pytrace=False)
    finally:
        client.close()
    return "runsc"


@pytest.fixture(scope="module")
def gvisor(docker_host: str, sandbox_image: str, gvisor_runtime: str) -> Iterator[DockerSandbox]:
    with DockerSandbox(image=sandbox_image, docker_host=docker_host, runtime=gvisor_runtime) as sandbox:
        yield sandbox
        assert_nothing_left(sandbox)


def test_code_runs_on_gvisors_kernel_with_files_and_no_network(gvisor: DockerSandbox) -> None:
    code = """
import json, os, platform, socket
data = open("in.txt").read()
open("out.txt", "w").write(data.upper())
print(json.dumps({"release": platform.release(), "uid": os.getuid(),
                  "interfaces": [n for _, n in socket.if_nameindex()], "env": sorted(os.environ)}))
"""
    os.environ["OPENAI_API_KEY"] = "sk-gvisor-canary"
    try:
        result = gvisor.run(code, files_in={"in.txt": "abc"}, timeout=30)
    finally:
        del os.environ["OPENAI_API_KEY"]
    assert result.ok, result.stderr_text
    seen = json.loads(result.stdout_text)
    assert seen["release"] == "4.4.0"  # gVisor's Sentry answers, not the host kernel
    assert seen["uid"] == 65534 and seen["interfaces"] == ["lo"] and "OPENAI_API_KEY" not in seen["env"]
    assert result.files_out["out.txt"] == b"ABC"


def test_resource_attacks_are_contained_under_gvisor(gvisor: DockerSandbox) -> None:
    memory = gvisor.run(
        "x = bytearray(1 << 30)", limits=SandboxLimits(timeout_seconds=30, memory_bytes=256 << 20)
    )
    assert memory.killed_reason is KilledReason.MEMORY
    fork = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    bomb = gvisor.run(fork, limits=SandboxLimits(timeout_seconds=8, pids=256))
    # whichever limit the bomb reaches first ends the whole gVisor sandbox
    assert bomb.killed_reason in (KilledReason.CONTAINER_DIED, KilledReason.MEMORY, KilledReason.TIMEOUT)
    spin = gvisor.run("while True:\n    pass\n", limits=SandboxLimits(timeout_seconds=3, cpu_seconds=1))
    # the runner sets the job's RLIMIT_CPU inside the sandbox, where gVisor's kernel enforces it
    assert spin.killed_reason is KilledReason.CPU and spin.wall_ms < 10_000
    shadow = gvisor.run("print(open('/etc/shadow').read())", timeout=30)
    assert shadow.exit_code == 1 and b"PermissionError" in shadow.stderr
