"""The Docker backend (production default): one hardened, throwaway container per run.

The container has no network, a read-only root, a size-limited tmpfs at ``/work`` as the only
writable place (no ``/dev/shm`` either: IPC mode none), runs as ``nobody`` with every capability
dropped and no-new-privileges, under memory/pids/CPU cgroup limits and an RLIMIT_CPU, optionally
under gVisor (``runtime="runsc"``). Its PID 1 is ``sleep <deadline>`` so it dies by itself even if
the caller is killed; it is auto-removed, labelled with its owner, and reaped on the next start.

The code runs as an ``exec`` in that container: a small bootstrap unpacks the input files from
stdin into the tmpfs and ``exec``s the command; a collector tars the work dir back afterwards.
(The archive API cannot reach a tmpfs, and cannot write into a read-only root.)
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from typing import Any

import docker
from docker.models.containers import Container
from docker.types import Ulimit
from docker.utils.socket import STDERR, STDOUT, frames_iter

from wflo_core.errors import SandboxError
from wflo_core.sandbox.base import WORKDIR, Sandbox, SandboxJob
from wflo_core.sandbox.docker_labels import owner_labels, reap_orphaned_containers, remove_container
from wflo_core.sandbox.docker_pool import WarmPool
from wflo_core.sandbox.files import tar_files, untar_files
from wflo_core.sandbox.output import CappedBuffer
from wflo_core.sandbox.policy import MiB, SandboxLimits
from wflo_core.sandbox.result import KilledReason, SandboxResult

SANDBOX_USER = "65534:65534"
#: Extra life a container gets beyond the run's timeout, for unpacking and collecting files.
GRACE_SECONDS = 30.0
_BOOT = """import os, sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
    archive.extractall("/work")
null = os.open("/dev/null", os.O_RDONLY); os.dup2(null, 0); os.close(null); os.chdir("/work")
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as err:
    print(f"sandbox: cannot run {sys.argv[1]!r}: {err.strerror}", file=sys.stderr); sys.exit(127)
"""
_COLLECT = """import os, signal, stat, sys, tarfile
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
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
        finally:
            if container is not None:
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
        started = time.monotonic()
        exec_id = api.exec_create(container.id, ["python3", "-S", "-c", _BOOT, *job.argv], stdin=True)["Id"]
        conn = api.exec_start(exec_id, socket=True)
        raw: socket.socket = conn._sock
        raw.sendall(tar_files(job.files))
        raw.shutdown(socket.SHUT_WR)
        over_cap = threading.Event()
        reader = threading.Thread(target=_read_frames, args=(conn, stdout, stderr, over_cap), daemon=True)
        reader.start()
        reader.join(limits.timeout_seconds)
        killed = None
        if reader.is_alive():
            killed = KilledReason.OUTPUT_LIMIT if over_cap.is_set() else KilledReason.TIMEOUT
        elif over_cap.is_set():
            killed = KilledReason.OUTPUT_LIMIT
        wall_ms = int((time.monotonic() - started) * 1000)
        exit_code = None if killed else _exec_exit_code(api, exec_id)
        cpu_ms, peak = _usage(api, container.id)
        files: dict[str, bytes] = {}
        files_truncated = False
        if killed is None:
            files, files_truncated = self._collect_files(container, limits)
        # Stop reading before the container is removed: the engine will not finish killing an
        # exec whose output nobody drains.
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        reader.join(5)
        conn.close()
        if killed is not None:
            exit_code = 128 + signal.SIGKILL
        elif exit_code == 128 + signal.SIGKILL and _oom(container, peak, limits):
            killed = KilledReason.MEMORY
        elif exit_code == 128 + signal.SIGXCPU:
            killed = KilledReason.CPU
        return SandboxResult(
            backend=self.name,
            exit_code=exit_code,
            stdout=stdout.getvalue(),
            stderr=stderr.getvalue(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            files_out=files,
            files_out_truncated=files_truncated,
            wall_ms=wall_ms,
            cpu_ms=cpu_ms,
            peak_memory_bytes=peak,
            killed_reason=killed,
            limits=limits,
        )

    def _collect_files(self, container: Container, limits: SandboxLimits) -> tuple[dict[str, bytes], bool]:
        """Kill leftover processes of the code, then tar regular files out of the tmpfs (capped)."""
        cap = limits.max_files_out_bytes
        api = self.client.api
        exec_id = api.exec_create(container.id, ["python3", "-I", "-S", "-c", _COLLECT, str(cap)])["Id"]
        archive = CappedBuffer(cap + cap // 4 + MiB)
        for out, _ in api.exec_start(exec_id, stream=True, demux=True):
            if out and archive.write(out):
                break
        files, truncated = untar_files(archive.getvalue(), max_total_bytes=cap)
        return files, truncated or archive.truncated or _exec_exit_code(api, exec_id) == 3


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


def _exec_exit_code(api: docker.APIClient, exec_id: str) -> int | None:
    """The exec's exit code; the stream can end a moment before the engine records it."""
    for _ in range(100):
        info = api.exec_inspect(exec_id)
        if not info["Running"]:
            return info["ExitCode"]
        time.sleep(0.01)
    return None


def _usage(api: docker.APIClient, container_id: str) -> tuple[int | None, int | None]:
    """(CPU ms, peak memory bytes) of the container from one stats sample; None where unknown."""
    try:
        stats = api.stats(container_id, stream=False, one_shot=True)
    except docker.errors.APIError:
        return None, None
    total = (stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage")
    peak = (stats.get("memory_stats") or {}).get("max_usage")
    return (total // 1_000_000 if total else None), peak


def _oom(container: Container, peak: int | None, limits: SandboxLimits) -> bool:
    """Whether a SIGKILLed exec died from the memory limit: Docker's OOM flag, or usage at the limit."""
    with contextlib.suppress(docker.errors.APIError):
        container.reload()
        if container.attrs["State"].get("OOMKilled"):
            return True
    return peak is not None and peak >= limits.memory_bytes - MiB
