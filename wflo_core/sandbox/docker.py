"""The Docker backend (production default): one hardened, throwaway container per run.

The container has no network, a read-only root, a size-limited tmpfs at ``/work`` as the only
writable place (no ``/dev/shm`` either: IPC mode none), runs as ``nobody`` with every capability
dropped and no-new-privileges, under memory/pids/CPU cgroup limits and an RLIMIT_CPU, optionally
under gVisor (``runtime="runsc"``). Its PID 1 is ``sleep <deadline>`` so it dies by itself even if
the caller is killed; it is auto-removed, labelled with its owner, and reaped on the next start.

The code runs as an ``exec`` in that container: ``tar`` unpacks the input files from stdin into
the tmpfs and the shell ``exec``s the command; afterwards one more exec collects usage and files
(:mod:`wflo_core.sandbox.docker_collect`).
(The archive API cannot reach a tmpfs, and cannot write into a read-only root.)
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
from docker.models.containers import Container
from docker.types import Ulimit
from docker.utils.socket import STDERR, STDOUT, frames_iter

from wflo_core.errors import SandboxError
from wflo_core.sandbox.base import WORKDIR, Sandbox, SandboxJob
from wflo_core.sandbox.docker_collect import collect
from wflo_core.sandbox.docker_labels import owner_labels, reap_orphaned_containers, remove_container
from wflo_core.sandbox.docker_pool import WarmPool
from wflo_core.sandbox.files import tar_files
from wflo_core.sandbox.output import CappedBuffer
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import KilledReason, SandboxResult

SANDBOX_USER = "65534:65534"
#: Extra life a container gets beyond the run's timeout, for unpacking and collecting files.
GRACE_SECONDS = 30.0
#: Unpack the inputs arriving on stdin into the tmpfs, then become the command (stdin: /dev/null).
_BOOT = f'tar -x -C {WORKDIR} -f - && exec "$@" </dev/null'


class DockerSandbox(Sandbox):
    """Runs each job in a fresh hardened container on a Docker engine."""

    name = "docker"

    def __init__(
        self,
        *,
        image: str = "wflo-sandbox:latest",
        docker_host: str | None = None,
        runtime: str | None = None,
        warm_pool_size: int = 0,
        pool_max_age_seconds: float = 600.0,
        limits: SandboxLimits | None = None,
    ) -> None:
        super().__init__(limits=limits)
        self.image = image
        self.runtime = runtime
        self.client = _connect(docker_host)
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"the sandbox image {image!r} is not on the Docker engine; build it with "
                "`scripts/build_sandbox_image.sh` (no registry needed) or set WFLO_SANDBOX_IMAGE"
            ) from None
        reap_orphaned_containers(self.client)
        # Used containers are removed off the caller's path; close() waits for the removals.
        self._remover = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wflo-sandbox-remove")
        self.pool: WarmPool | None = None
        if warm_pool_size > 0:
            self.pool = WarmPool(
                lambda lifetime: self._start_container(self.default_limits, lifetime),
                remove_container,
                size=warm_pool_size,
                max_age_seconds=pool_max_age_seconds,
            )
            self.pool.fill()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self._remover.shutdown(wait=True)
        self.client.close()

    def _execute(self, job: SandboxJob) -> SandboxResult:
        needed = job.limits.timeout_seconds + GRACE_SECONDS
        container = None
        if self.pool is not None and job.limits == self.default_limits:
            container = self.pool.take(needed_seconds=needed)
        try:
            if container is None:
                container = self._start_container(job.limits, needed)
            return self._run_in(container, job)
        except (docker.errors.DockerException, OSError) as err:
            raise SandboxError(f"the Docker engine failed while running sandboxed code: {err}") from err
        finally:
            if container is not None:
                try:
                    self._remover.submit(remove_container, container)
                except RuntimeError:  # closed while this run was still going
                    remove_container(container)

    def _start_container(self, limits: SandboxLimits, lifetime: float) -> Container:
        cpu = limits.effective_cpu_seconds
        options: dict[str, Any] = {
            "user": SANDBOX_USER,
            "working_dir": WORKDIR,
            "hostname": "sandbox",
            "network_mode": "none",
            "ipc_mode": "none",
            "read_only": True,
            "tmpfs": {WORKDIR: f"rw,nosuid,nodev,size={limits.workdir_bytes},uid=65534,gid=65534"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": limits.pids,
            "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes,
            "nano_cpus": int(limits.cpus * 1e9),
            "ulimits": [
                Ulimit(name="cpu", soft=cpu, hard=cpu + 1),
                Ulimit(name="core", soft=0, hard=0),
                Ulimit(name="nofile", soft=256, hard=256),
            ],
            "auto_remove": True,
            "labels": owner_labels(lifetime),
        }
        if self.runtime:
            options["runtime"] = self.runtime
        try:
            container = self.client.containers.create(self.image, ["sleep", str(int(lifetime))], **options)
            container.start()
        except docker.errors.DockerException as err:
            raise SandboxError(f"could not start a sandbox container from {self.image!r}: {err}") from err
        return container

    def _run_in(self, container: Container, job: SandboxJob) -> SandboxResult:
        limits = job.limits
        stdout, stderr = CappedBuffer(limits.max_output_bytes), CappedBuffer(limits.max_output_bytes)
        api = self.client.api
        started, started_epoch = time.monotonic(), time.time()
        boot = ["/bin/sh", "-c", _BOOT, "sandbox", *job.argv]
        exec_id = api.exec_create(container.id, boot, stdin=True)["Id"]
        conn = api.exec_start(exec_id, socket=True)
        raw: socket.socket = conn._sock
        raw.settimeout(limits.timeout_seconds)  # only for sending the inputs; reads poll first
        raw.sendall(tar_files(job.files))
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(None)
        over_cap = threading.Event()
        reader = threading.Thread(target=_read_frames, args=(conn, stdout, stderr, over_cap), daemon=True)
        reader.start()
        deadline = started + limits.timeout_seconds
        killed = None
        while reader.is_alive() and (remaining := deadline - time.monotonic()) > 0:
            reader.join(min(remaining, 0.5))
            # e.g. gVisor ends the whole sandbox on OOM, and the exec stream may then hang
            if reader.is_alive() and (killed := _container_end(api, container.id, started_epoch)):
                break
        if over_cap.is_set():
            killed = KilledReason.OUTPUT_LIMIT
        elif killed is None and reader.is_alive():
            killed = KilledReason.TIMEOUT
        # Stop reading first: the engine will not finish killing an exec whose output nobody drains.
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        reader.join(5)
        conn.close()
        exit_code = None
        if killed is None:  # the output can end (closed stdout) before the process does
            exit_code = _exec_exit_code(api, exec_id, deadline=deadline)
            killed = KilledReason.TIMEOUT if exit_code is None else None
        wall_ms = int((time.monotonic() - started) * 1000)
        found = collect(api, container.id, max_files_bytes=limits.max_files_out_bytes)
        if killed is not None:
            exit_code = 128 + signal.SIGKILL
        elif exit_code == 128 + signal.SIGKILL and found.oom_killed:
            killed = KilledReason.MEMORY
        elif exit_code == 128 + signal.SIGXCPU:
            killed = KilledReason.CPU
        elif exit_code is not None and exit_code >= 128:
            killed = _container_end(api, container.id, started_epoch)
        return SandboxResult(
            backend=self.name,
            exit_code=exit_code,
            stdout=stdout.getvalue(),
            stderr=stderr.getvalue(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            files_out=found.files,
            files_out_truncated=found.files_truncated,
            wall_ms=wall_ms,
            cpu_ms=found.cpu_ms,
            peak_memory_bytes=found.peak_memory_bytes,
            killed_reason=killed,
            limits=limits,
        )


def _connect(docker_host: str | None) -> docker.DockerClient:
    try:
        client = (
            docker.DockerClient(base_url=docker_host, timeout=120)
            if docker_host
            else docker.from_env(timeout=120)
        )
        client.ping()
    except docker.errors.DockerException as err:
        raise SandboxError(
            f"the Docker engine at {docker_host or 'DOCKER_HOST/default socket'} is not reachable ({err}); "
            "start dockerd, set WFLO_DOCKER_HOST, or use WFLO_SANDBOX_BACKEND=process"
        ) from err
    return client


def _read_frames(conn: Any, stdout: CappedBuffer, stderr: CappedBuffer, over_cap: threading.Event) -> None:
    sinks = {STDOUT: stdout, STDERR: stderr}
    with contextlib.suppress(OSError):
        for stream, data in frames_iter(conn, tty=False):
            sink = sinks.get(stream)
            if sink is not None and sink.write(data):
                over_cap.set()
                return


def _container_end(api: docker.APIClient, container_id: str, since: float) -> KilledReason | None:
    """Why the container stopped under the code (None while it still runs): OOM or anything else."""
    try:
        state = api.inspect_container(container_id)["State"]
    except docker.errors.NotFound:  # already auto-removed
        state = {"Running": False}
    if state.get("Running"):
        return None
    oom = state.get("OOMKilled") or _oom_event_since(api, container_id, since)
    return KilledReason.MEMORY if oom else KilledReason.CONTAINER_DIED


def _oom_event_since(api: docker.APIClient, container_id: str, since: float) -> bool:
    """Whether the engine reported an OOM in the container (its state may already be gone)."""
    until = time.time() + 1
    events = api.events(
        since=int(since) - 1, until=int(until) + 1, filters={"container": container_id, "event": "oom"}
    )
    try:
        return any(True for _ in events)
    finally:
        events.close()


def _exec_exit_code(api: docker.APIClient, exec_id: str, *, deadline: float) -> int | None:
    """The exec's exit code once it has exited; None if it still runs at ``deadline``."""
    while True:
        info = api.exec_inspect(exec_id)
        if not info["Running"]:
            return info["ExitCode"]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)
