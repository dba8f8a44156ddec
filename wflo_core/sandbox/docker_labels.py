"""Labels that tie every sandbox container to its owner, and the reaper that uses them.

A container removes itself when its runner exits: after its one job, at its deadline, or as soon
as the owning process's connection to it closes (the owner was killed). If a container was never
started or attached (the owner died in between), the next sandbox started on the same host removes
it: its owner label names a host and pid that no longer runs, or its deadline has passed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

import docker

LABEL = "io.wflo.sandbox"
OWNER_LABEL = "io.wflo.sandbox.owner"
DEADLINE_LABEL = "io.wflo.sandbox.deadline"


def owner_labels(lifetime_seconds: float) -> dict[str, str]:
    return {
        LABEL: "1",
        OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}",
        DEADLINE_LABEL: str(int(time.time() + lifetime_seconds)),
    }


def is_orphaned(labels: dict[str, str], *, now: float | None = None) -> bool:
    """The container's deadline has passed, or its owner was a process on this host that is gone."""
    now = time.time() if now is None else now
    deadline = labels.get(DEADLINE_LABEL, "")
    if deadline.isdigit() and int(deadline) < now:
        return True
    host, _, pid = labels.get(OWNER_LABEL, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_container(api: docker.APIClient, container_id: str) -> None:
    """Kill and remove, ignoring a container that is already gone or being auto-removed."""
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        api.remove_container(container_id, force=True)


def reap_orphaned_containers(client: docker.DockerClient) -> list[str]:
    """Remove sandbox containers whose owner died or whose deadline passed; their names.

    One listing call (no inspect per container): containers remove themselves all the time, and
    one gone between listing and inspecting must not fail the caller.
    """
    reaped = []
    for summary in client.api.containers(all=True, filters={"label": LABEL}):
        if is_orphaned(summary.get("Labels") or {}):
            remove_container(client.api, summary["Id"])
            reaped.append((summary.get("Names") or [summary["Id"]])[0].lstrip("/"))
    return reaped
