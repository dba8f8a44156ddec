"""Opening each sandbox backend from the harness's own tools, and checking nothing is left behind.

Shared by the sandbox contract modules (attack suite, legitimate programs): each parametrizes a
module-scoped ``sandbox`` fixture over :data:`BACKENDS` with :func:`open_backend`.
"""

from __future__ import annotations

import os
import time

import pytest

from wflo_core.sandbox import Sandbox
from wflo_core.sandbox.cgroups import RunCgroup
from wflo_core.sandbox.docker_labels import LABEL, OWNER_LABEL

BACKENDS = ["process", "docker"]


def open_backend(request: pytest.FixtureRequest) -> Sandbox:
    """The backend named by ``request.param``: bubblewrap installed, or dockerd started + image built."""
    if request.param == "docker":
        from wflo_core.sandbox.docker import DockerSandbox

        image = request.getfixturevalue("sandbox_image")
        return DockerSandbox(image=image, docker_host=request.getfixturevalue("docker_host"))
    from wflo_core.sandbox.process import ProcessSandbox

    request.getfixturevalue("bubblewrap")
    return ProcessSandbox()


def assert_nothing_left(sandbox: Sandbox, timeout: float = 15.0) -> None:
    """No container, process, cgroup or work dir of this test process remains (auto-removal is async)."""
    deadline = time.monotonic() + timeout
    while (leftovers := _leftovers(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers == [], f"left behind: {leftovers}"


def _leftovers(sandbox: Sandbox) -> list[str]:
    if sandbox.name == "docker":
        containers = sandbox.client.containers.list(all=True, filters={"label": LABEL})  # type: ignore[attr-defined]
        mine = [c for c in containers if c.labels.get(OWNER_LABEL, "").endswith(f":{os.getpid()}")]
        return [f"container {c.name} ({c.status})" for c in mine]
    found = [f"cgroup {n}" for n in RunCgroup.stale_names() if n.startswith(f"{os.getpid()}-")]
    found += [f"run dir {p.name}" for p in sandbox.base_dir.iterdir()]  # type: ignore[attr-defined]
    for name in RunCgroup.stale_names():
        found += [f"process {pid}" for pid in RunCgroup(name).pids_in_group()]
    return found
