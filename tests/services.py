"""Throwaway real services for the test suite: Postgres, Redis, a Kafka-protocol broker, dockerd.

Each ``start_*`` function returns a :class:`Service` bound to a free loopback port (or the URL given
in the matching ``WFLO_TEST_*`` environment variable, e.g. an existing compose stack). Missing
software is installed with apt/pip first. A service that cannot start raises :class:`ServiceError`
saying which one and why; the fixtures turn that into a test failure, never a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

DOCKER_SOCKET = Path("/run/wflo-test-docker/docker.sock")
DOCKER_DATA_ROOT = Path("/var/lib/wflo-test-docker")


class ServiceError(RuntimeError):
    """A test service could not be installed or started."""


@dataclass
class Service:
    name: str
    url: str
    stop: Callable[[], None] = field(default=lambda: None, repr=False)
    #: Extra facts a test may need (pid, data dir, port).
    info: dict[str, str] = field(default_factory=dict)



def stop_process(proc: subprocess.Popen, *, timeout: float, group: bool = False,
                 sig: int = signal.SIGTERM) -> None:
    """Stop ``proc`` (its whole process group with ``group``) with ``sig``, killing it if it has not
    exited within ``timeout`` s."""
    if proc.poll() is not None:
        return

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)

    send(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(10)

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ServiceError(f"{what} failed ({' '.join(cmd[:3])}...): {' | '.join(tail)}")
    return proc


_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages that are missing (we run as root on the CI machines)."""
    global _apt_updated
    if shutil.which("apt-get") is None:
        raise ServiceError(f"apt-get is not available to install {', '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
        _apt_updated = True
    _run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        f"apt-get install {' '.join(packages)}",
        env=env,
    )


def ensure_command(command: str, package: str) -> str:
    """Path of ``command``, with Debian's ``package`` installed first if it is missing."""
    if shutil.which(command) is None:
        apt_install(package)
    path = shutil.which(command)
    if path is None:
        raise ServiceError(f"{command} is still missing after apt-get install {package}")
    return path


# --------------------------------------------------------------------------------------------- postgres


def start_postgres() -> Service:
    if url := os.environ.get("WFLO_TEST_DATABASE_URL"):
        return Service("postgres", url)
    pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: float(p.parent.name))
    if not pg_bins:
        apt_install("postgresql")
        pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: float(p.parent.name))
    if not pg_bins:
        raise ServiceError("postgres: no server binaries under /usr/lib/postgresql after installing")
    pg_bin = pg_bins[-1]
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="wflo-pg-"))
    shutil.chown(data, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    _run([*as_pg, str(pg_bin / "initdb"), "-D", str(data / "data"), "-A", "trust", "-U", "postgres",
          "--no-sync", "-E", "UTF8"], "postgres initdb")
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=300")
    _run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data / "data"), "-l", str(data / "log"), "-w",
          "-o", opts, "start"], "postgres pg_ctl start")

    def stop() -> None:
        subprocess.run([*as_pg, str(pg_bin / "pg_ctl"), "-D", str(data / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)

    return Service("postgres", f"postgresql://postgres@127.0.0.1:{port}/postgres", stop,
                   {"port": str(port), "data_dir": str(data), "pg_bin": str(pg_bin)})


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A new empty database on a Postgres server, dropped (connections and all) afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------- redis


def start_redis() -> Service:
    if url := os.environ.get("WFLO_TEST_REDIS_URL"):
        return Service("redis", url)
    if shutil.which("redis-server") is None:
        apt_install("redis-server")
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="wflo-redis-"))
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(data)],
        stdout=open(data / "redis.log", "wb"), stderr=subprocess.STDOUT,
    )
    if not wait_for_port(port, 10):
        proc.kill()
        raise ServiceError(f"redis: not listening on 127.0.0.1:{port}; log: {(data / 'redis.log').read_text()[-300:]}")

    def stop() -> None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        proc.kill()
        shutil.rmtree(data, ignore_errors=True)

    return Service("redis", f"redis://127.0.0.1:{port}/0", stop, {"port": str(port), "pid": str(proc.pid)})


# --------------------------------------------------------------------------------------------- kafka


def kafka_broker_binary() -> Path:
    """The Kafka-protocol broker shipped in the ``noida-db`` wheel (installed with pip if missing)."""
    try:
        import noida_db  # noqa: F401
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "-q", "noida-db==0.2.3"], "pip install noida-db")
    import noida_db

    binary = Path(noida_db.__file__).parent / "noida-db"
    if not binary.exists():
        raise ServiceError(f"kafka: broker binary not found at {binary}")
    return binary


@dataclass
class KafkaBroker:
    """A broker process that tests can stop and restart on the same port and data dir."""

    port: int
    data_dir: Path
    proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.data_dir / "broker.log", "ab")
        self.proc = subprocess.Popen(
            [str(kafka_broker_binary()), "start", "--data-dir", str(self.data_dir), "--only", "kafka",
             "--kafka-port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        if not wait_for_port(self.port, 20):
            self.stop()
            raise ServiceError(f"kafka: broker not listening on {self.bootstrap}; "
                               f"log: {(self.data_dir / 'broker.log').read_text()[-300:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=5)
            self.proc = None


def start_kafka() -> Service:
    if bootstrap := os.environ.get("WFLO_TEST_KAFKA_BOOTSTRAP_SERVERS"):
        return Service("kafka", bootstrap)
    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-kafka-")))
    broker.start()

    def stop() -> None:
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)

    return Service("kafka", broker.bootstrap, stop, {"port": str(broker.port), "data_dir": str(broker.data_dir)})


# --------------------------------------------------------------------------------------------- docker


def _docker_ping(host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        ok = client.ping()
        client.close()
        return bool(ok)
    except Exception:
        return False


def start_dockerd() -> Service:
    """dockerd with ``--bridge=none --iptables=false`` on its own socket and data root.

    The daemon is shared across test sessions on the machine (images built once stay cached in its
    data root). Each session holds a lease on it while it runs; the session that started it stops it
    at the end, unless another session still holds a lease or ``WFLO_TEST_KEEP_DOCKERD`` is set.
    """
    if host := os.environ.get("WFLO_TEST_DOCKER_HOST"):
        return Service("docker", host)
    host = f"unix://{DOCKER_SOCKET}"
    lease = _DockerLease()
    if _docker_ping(host):
        return Service("docker", host, lease.release)
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    DOCKER_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    DOCKER_DATA_ROOT.mkdir(parents=True, exist_ok=True)
    exec_root = Path("/run/wflo-test-docker/exec")
    log = open(DOCKER_SOCKET.parent / "dockerd.log", "ab")
    proc = subprocess.Popen(
        ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "-H", host,
         "--data-root", str(DOCKER_DATA_ROOT), "--exec-root", str(exec_root),
         "--pidfile", str(DOCKER_SOCKET.parent / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _docker_ping(host):
            break
        if proc.poll() is not None:
            tail = (DOCKER_SOCKET.parent / "dockerd.log").read_text()[-400:]
            raise ServiceError(f"docker: dockerd exited with {proc.returncode}: {tail}")
        time.sleep(0.2)
    else:
        proc.kill()
        raise ServiceError("docker: dockerd did not answer a ping within 60 s")

    def stop() -> None:
        if os.environ.get("WFLO_TEST_KEEP_DOCKERD") or not lease.release(last=True):
            return
        try:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            proc.kill()
        finally:
            lease.close()

    return Service("docker", host, stop, {"pid": str(proc.pid)})


class _DockerLease:
    """A test session's share of the machine's test dockerd: a shared ``flock`` on one file, held
    until the session ends. The session that started the daemon stops it only when its exclusive
    lock succeeds, i.e. no other session (another checkout's suite, a helper's run) still uses it;
    a session that starts meanwhile waits for that stop to finish and then starts a new daemon."""

    def __init__(self, path: Path = DOCKER_SOCKET.parent / "sessions.lock") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self, last: bool = False) -> bool:
        """End this session's lease; with ``last``, True (the lock kept exclusive until :meth:`close`)
        if no other session holds one."""
        if self._fd is None:
            return False
        if last:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
        self.close()
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
