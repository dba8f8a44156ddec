"""The Docker backend (production default): one hardened, throwaway container per run.

The container has no network, a read-only root, a size-limited tmpfs at ``/work`` as the only
writable place (no ``/dev/shm`` either: IPC mode none), runs as ``nobody`` with every capability
dropped and no-new-privileges, under memory/pids/CPU cgroup limits, optionally under gVisor
(``runtime="runsc"``).

Its PID 1 is the runner (:mod:`wflo_core.sandbox.container_runner`): it waits on the container's
attached stdin for one job, sent as one framed payload (argv, limits, input files), runs it, streams
the output back, reports usage and the work dir's files, and exits. So a run is one container
create, attach and start and no ``exec`` at all; a warm pool (:mod:`wflo_core.sandbox.docker_pool`)
moves even those off the caller's path. The container is auto-removed when the runner exits, and
the runner exits as soon as its stdin closes, so a killed caller takes its containers with it.
Containers are also labelled with their owner and deadline and reaped on the next start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import docker
from docker.types import Ulimit

from wflo_core.errors import SandboxError
from wflo_core.sandbox.base import WORKDIR, Sandbox, SandboxJob
from wflo_core.sandbox.docker_labels import owner_labels, reap_orphaned_containers, remove_container
from wflo_core.sandbox.docker_pool import WarmPool
from wflo_core.sandbox.docker_stream import RunnerOutput, read_runner_output, wait_until_ready
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import KilledReason, SandboxResult

SANDBOX_USER = "65534:65534"
#: Extra life a container gets beyond the run's timeout, for starting and collecting files.
GRACE_SECONDS = 30.0
#: How long after the timeout the host waits for the runner's report before killing the container.
COLLECT_SECONDS = 10.0
RUNNER_SOURCE = (Path(__file__).parent / "container_runner.py").read_text()


@dataclass
class Runner:
    """A started container whose runner waits for its one job on the attached socket."""

    container_id: str
    sock: socket.socket
    #: Keeps the HTTP response (and so the hijacked connection) alive as long as the socket.
    handle: Any


class DockerSandbox(Sandbox):
    """Runs each job in a fresh hardened container on a Docker engine."""

    name: Literal["docker"] = "docker"

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
        self.api: docker.APIClient = self.client.api
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"the sandbox image {image!r} is not on the Docker engine; build it with "
                "`scripts/build_sandbox_image.sh` (no registry needed) or set WFLO_SANDBOX_IMAGE"
            ) from None
        reap_orphaned_containers(self.client)
        # Containers that did not end by themselves are removed off the caller's path; close() waits.
        self._remover = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wflo-sandbox-remove")
        self.pool: WarmPool[Runner] | None = None
        if warm_pool_size > 0:
            self.pool = WarmPool(
                lambda lifetime: self._start_ready_runner(self.default_limits, lifetime),
                self._discard,
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
        limits = job.limits
        needed = max(limits.timeout_seconds, limits.effective_cpu_seconds + 1) + GRACE_SECONDS
        runner = None
        if self.pool is not None and _same_container(limits, self.default_limits):
            runner = self.pool.take(needed_seconds=needed)
        ended_by_itself = False
        try:
            if runner is None:
                runner = self._start_runner(limits, needed)
            result, ended_by_itself = self._run_on(runner, job)
            return result
        except (docker.errors.DockerException, OSError) as err:
            raise SandboxError(f"the Docker engine failed while running sandboxed code: {err}") from err
        finally:
            if runner is not None:
                self._release(runner, remove=not ended_by_itself)
            if self.pool is not None:
                self.pool.refill_async()  # after the run, so refilling never slows the run down

    def _start_runner(self, limits: SandboxLimits, lifetime: float) -> Runner:
        """Create, attach to and start a container whose runner waits ``lifetime`` s for its job."""
        ceiling = int(lifetime) + 1  # the runner gives the job its own, lower CPU-time limit
        host_config = self.api.create_host_config(
            network_mode="none",
            ipc_mode="none",
            read_only=True,
            tmpfs={WORKDIR: f"rw,nosuid,nodev,size={limits.workdir_bytes},uid=65534,gid=65534"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=limits.pids,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,
            nano_cpus=int(limits.cpus * 1e9),
            ulimits=[
                Ulimit(name="cpu", soft=ceiling, hard=ceiling),
                Ulimit(name="core", soft=0, hard=0),
                Ulimit(name="nofile", soft=256, hard=256),
            ],
            auto_remove=True,
            runtime=self.runtime,
        )
        command = ["python3", "-I", "-S", "-c", RUNNER_SOURCE, str(int(lifetime))]
        try:
            container_id = self.api.create_container(
                self.image,
                command,
                user=SANDBOX_USER,
                working_dir=WORKDIR,
                hostname="sandbox",
                stdin_open=True,  # and StdinOnce: the runner's stdin closes with our connection
                labels=owner_labels(lifetime),
                host_config=host_config,
            )["Id"]
        except docker.errors.DockerException as err:
            raise SandboxError(f"could not start a sandbox container from {self.image!r}: {err}") from err
        try:
            handle = self.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.api.start(container_id)
        except docker.errors.DockerException as err:
            remove_container(self.api, container_id)
            raise SandboxError(f"could not start a sandbox container from {self.image!r}: {err}") from err
        return Runner(container_id, getattr(handle, "_sock", handle), handle)

    def _start_ready_runner(self, limits: SandboxLimits, lifetime: float) -> Runner:
        """A started runner that has said it waits for its job (what the warm pool holds)."""
        runner = self._start_runner(limits, lifetime)
        if not wait_until_ready(runner.sock, timeout=60):
            self._release(runner, remove=True)
            raise SandboxError(f"a sandbox container from {self.image!r} started but its runner never got ready")
        return runner

    def _run_on(self, runner: Runner, job: SandboxJob) -> tuple[SandboxResult, bool]:
        """Send the job, read what comes back; (result, whether the container ends by itself)."""
        limits = job.limits
        fields = [
            str(limits.timeout_seconds),
            str(limits.effective_cpu_seconds),
            str(limits.max_output_bytes),
            str(limits.max_files_out_bytes),
            str(len(job.argv)),
            *job.argv,
        ]
        for name, data in job.files.items():
            fields += [name, str(len(data))]
        header = b"\0".join(os.fsencode(field) for field in fields)
        started, started_epoch = time.monotonic(), time.time()
        runner.sock.settimeout(limits.timeout_seconds)
        runner.sock.sendall(b"".join([struct.pack(">I", len(header)), header, *job.files.values()]))
        out = read_runner_output(
            runner.sock,
            limits,
            deadline=started + limits.timeout_seconds + COLLECT_SECONDS,
            ended=lambda: _container_end(self.api, runner.container_id, started_epoch) is not None,
        )
        wall_ms = int((time.monotonic() - started) * 1000)
        if out.host_killed is not None:  # stop it now, before the result goes back
            remove_container(self.api, runner.container_id)
        killed, exit_code = _outcome(out)
        if out.report is None:
            if killed is None:  # the container ended under the code
                killed = _container_end(self.api, runner.container_id, started_epoch)
                killed = killed or KilledReason.CONTAINER_DIED
            exit_code = 128 + signal.SIGKILL
        result = SandboxResult(
            backend=self.name,
            exit_code=exit_code,
            stdout=out.stdout.getvalue(),
            stderr=out.stderr.getvalue(),
            stdout_truncated=out.stdout.truncated or out.report_flag("stdout_truncated"),
            stderr_truncated=out.stderr.truncated or out.report_flag("stderr_truncated"),
            files_out=out.files,
            files_out_truncated=out.files_truncated or out.report_flag("files_truncated"),
            wall_ms=wall_ms,
            cpu_ms=out.report_count("cpu_ms"),
            peak_memory_bytes=out.report_count("peak_memory_bytes"),
            killed_reason=killed,
            limits=limits,
        )
        return result, out.report is not None and not out.host_killed

    def _release(self, runner: Runner, *, remove: bool) -> None:
        _close_quietly(runner)
        if remove:
            try:
                self._remover.submit(remove_container, self.api, runner.container_id)
            except RuntimeError:  # closed while this run was still going
                remove_container(self.api, runner.container_id)

    def _discard(self, runner: Runner) -> None:
        """Drop an idle pooled container: closing its stdin already ends it; removal makes sure."""
        self._release(runner, remove=True)


def _same_container(job: SandboxLimits, pool: SandboxLimits) -> bool:
    """Whether a pooled container (made for ``pool``) enforces exactly the limits ``job`` asks for.

    Memory, pids, CPU share and work-dir size are fixed when a container starts; timeout, CPU time
    and output caps travel with the job and are enforced by its runner.
    """
    fixed = ("memory_bytes", "pids", "cpus", "workdir_bytes")
    return all(getattr(job, name) == getattr(pool, name) for name in fixed)


def _outcome(out: RunnerOutput) -> tuple[KilledReason | None, int | None]:
    """Why the run was stopped (None if it ended by itself) and its exit code, from what came back."""
    if out.host_killed is not None:
        return out.host_killed, 128 + signal.SIGKILL
    report = out.report
    if report is None:
        return None, None
    if report.get("timed_out") is True:
        return KilledReason.TIMEOUT, 128 + signal.SIGKILL
    if report.get("output_over") is True:
        return KilledReason.OUTPUT_LIMIT, 128 + signal.SIGKILL
    exit_code = out.report_count("exit_code")
    if exit_code == 128 + signal.SIGKILL and report.get("oom_killed") is True:
        return KilledReason.MEMORY, exit_code
    if exit_code == 128 + signal.SIGXCPU:
        return KilledReason.CPU, exit_code
    return None, exit_code


def _close_quietly(runner: Runner) -> None:
    with contextlib.suppress(OSError):
        runner.sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        runner.sock.close()
    with contextlib.suppress(Exception):
        runner.handle.close()


def _connect(docker_host: str | None) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=120) if docker_host else docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as err:
        raise SandboxError(
            f"the Docker engine at {docker_host or 'DOCKER_HOST/default socket'} is not reachable ({err}); "
            "start dockerd, set WFLO_DOCKER_HOST, or use WFLO_SANDBOX_BACKEND=process"
        ) from err
    return client


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
    events = api.events(since=int(since) - 1, until=int(until) + 1, filters={"container": container_id, "event": "oom"})
    try:
        return any(True for _ in events)
    finally:
        events.close()
