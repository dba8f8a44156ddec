"""Opening each sandbox backend from the harness's own tools, and checking nothing is left behind.

Shared by the sandbox contract modules (attack suite, legitimate programs): they import the
module-scoped ``sandbox`` fixture (parametrized over :data:`BACKENDS`) and the autouse
``nothing_left_behind`` check from here. ``docker-pool`` is the Docker backend with every job
served by a warm-pool container, and ``process-prestart`` the process backend with every job
served by a sandbox set up ahead of it, so those paths are attacked too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import docker
import pytest

from wflo_core.sandbox import Sandbox, SandboxResult
from wflo_core.sandbox.base import SandboxJob
from wflo_core.sandbox.cgroups import RunCgroup
from wflo_core.sandbox.docker_labels import LABEL, OWNER_LABEL

BACKENDS = ["process", "process-prestart", "docker", "docker-pool"]


class PooledDocker(Sandbox):
    """The Docker backend, every job served from a warm pool made for exactly that job's limits.

    A pooled container only serves jobs whose container-level limits it was started with, so each
    job gets its own one-container pool, filled before the job is sent; each job is checked to
    have been served by the pool, never by a cold container.
    """

    name = "docker"

    def __init__(self, image: str, docker_host: str) -> None:
        super().__init__()
        from wflo_core.sandbox.docker import DockerSandbox

        self.opened = lambda limits: DockerSandbox(
            image=image, docker_host=docker_host, limits=limits, warm_pool_size=1
        )
        self.client = docker.DockerClient(base_url=docker_host)

    def _execute(self, job: SandboxJob) -> SandboxResult:
        with self.opened(job.limits) as pooled:
            assert pooled.pool is not None and pooled.pool.idle_count() == 1
            result = pooled._execute(job)
            assert pooled.pool.served == 1, "the job was not served by the warm pool"
        return result

    def close(self) -> None:
        self.client.close()


class PrestartedProcess(Sandbox):
    """The process backend, every job served by a sandbox that was set up before the job came."""

    name = "process"

    def __init__(self) -> None:
        super().__init__()
        from wflo_core.sandbox.process import ProcessSandbox

        self.opened = lambda limits: ProcessSandbox(limits=limits, prestart=True)
        with ProcessSandbox() as plain:
            self.base_dir = plain.base_dir

    def _execute(self, job: SandboxJob) -> SandboxResult:
        with self.opened(job.limits) as prestarted:
            deadline = time.monotonic() + 30
            while prestarted.prepared_run is None and time.monotonic() < deadline:
                time.sleep(0.01)
            result = prestarted._execute(job)
            assert prestarted.prestarted_runs == 1, "the job was not served by a prestarted sandbox"
        return result


def open_backend(request: pytest.FixtureRequest) -> Sandbox:
    """The backend named by ``request.param``: bubblewrap installed, or dockerd started + image built."""
    if request.param in ("docker", "docker-pool"):
        from wflo_core.sandbox.docker import DockerSandbox

        image = request.getfixturevalue("sandbox_image")
        host = request.getfixturevalue("docker_host")
        return (
            PooledDocker(image, host)
            if request.param == "docker-pool"
            else DockerSandbox(image=image, docker_host=host)
        )
    from wflo_core.sandbox.process import ProcessSandbox

    request.getfixturevalue("bubblewrap")
    return PrestartedProcess() if request.param == "process-prestart" else ProcessSandbox()


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with open_backend(request) as built:
        yield built


@pytest.fixture(autouse=True)
def nothing_left_behind(sandbox: Sandbox) -> Iterator[None]:
    yield
    assert_nothing_left(sandbox)


def assert_nothing_left(sandbox: Sandbox, timeout: float = 15.0) -> None:
    """No container, process, cgroup or work dir of this test process remains (auto-removal is async)."""
    deadline = time.monotonic() + timeout
    while (leftovers := _leftovers(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers == [], f"left behind: {leftovers}"


def _leftovers(sandbox: Sandbox) -> list[str]:
    if sandbox.name == "docker":
        containers = sandbox.client.api.containers(all=True, filters={"label": LABEL})  # type: ignore[attr-defined]
        mine = [c for c in containers if (c.get("Labels") or {}).get(OWNER_LABEL, "").endswith(f":{os.getpid()}")]
        return [f"container {c['Names'][0]} ({c['State']})" for c in mine]
    found = [f"cgroup {n}" for n in RunCgroup.stale_names() if n.startswith(f"{os.getpid()}-")]
    found += [f"run dir {p.name}" for p in sandbox.base_dir.iterdir()]  # type: ignore[attr-defined]
    for name in RunCgroup.stale_names():
        found += [f"process {pid}" for pid in RunCgroup(name).pids_in_group()]
    return found
