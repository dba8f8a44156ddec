"""Opening each sandbox backend from the harness's own tools, and checking nothing is left behind.

Shared by the sandbox contract modules (attack suite, legitimate programs): they import the
module-scoped ``sandbox`` fixture (parametrized over :data:`BACKENDS`) and the autouse
``nothing_left_behind`` check from here. ``docker-pool`` is the Docker backend with every job
served by a warm-pool container. ``process`` is the process backend as users get it (jobs served by
the sandbox set up ahead of them) and ``process-cold`` the one that sets each sandbox up on the
run's path, so both paths are attacked.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import docker
import pytest

from wflo_core.sandbox import Sandbox, SandboxResult
from wflo_core.sandbox.base import SandboxJob
from wflo_core.sandbox.cgroups import RunCgroup
from wflo_core.sandbox.docker_labels import LABEL, OWNER_LABEL

BACKENDS = ["process", "process-cold", "docker", "docker-pool"]


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


class WarmProcess(Sandbox):
    """The process backend as users get it: jobs served by the sandbox set up ahead of them.

    That sandbox is set up with the default limits, so jobs with other limits also check that
    those are applied when it is released (tmpfs size, cgroup limits). A job that starts while no
    other runs first waits until the sandbox is ready, as between real runs, and is checked to have
    been served by it; concurrent jobs beyond the one ready sandbox are set up on their own path.
    """

    name = "process"

    def __init__(self) -> None:
        super().__init__()
        from wflo_core.sandbox.process import ProcessSandbox

        self.inner = ProcessSandbox()
        self.base_dir = self.inner.base_dir
        self._lock = threading.Lock()
        self._running = 0

    @property
    def prepared_runs(self) -> list[str]:
        return self.inner.prepared_runs

    def _execute(self, job: SandboxJob) -> SandboxResult:
        with self._lock:
            alone, self._running = self._running == 0, self._running + 1
        try:
            if not alone:
                return self.inner._execute(job)
            deadline = time.monotonic() + 30
            while self.inner.prepared_run is None and time.monotonic() < deadline:
                time.sleep(0.01)
            served = self.inner.warm_runs
            result = self.inner._execute(job)
            assert self.inner.warm_runs > served, "the job was not served by a sandbox set up ahead"
            return result
        finally:
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        self.inner.close()


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
    return WarmProcess() if request.param == "process" else ProcessSandbox(warm_pool_size=0)


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
    # The sandboxes waiting, set up, for the next runs are expected; nothing else is.
    waiting = set(getattr(sandbox, "prepared_runs", ()))
    names = [n for n in RunCgroup.stale_names() if n.startswith(f"{os.getpid()}-") and n not in waiting]
    found = [f"cgroup {n}" for n in names]
    mine = [p.name for p in sandbox.base_dir.iterdir() if p.name.startswith(f"{os.getpid()}-")]  # type: ignore[attr-defined]
    found += [f"run dir {name}" for name in mine if name not in waiting]
    for name in names:
        found += [f"process {pid}" for pid in RunCgroup(name).pids_in_group()]
    return found
