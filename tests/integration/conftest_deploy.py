"""Deployment fixtures: the run image, and the compose stack's Dagster processes around it.

``dagster_deployment`` runs what docker-compose.yml runs, as host processes against the suite's
Postgres, Redis and Kafka: the image's own migrate command (in a container), ``dagster code-server
start -m wflo_dagster.definitions`` (the compose ``user-code`` command), a ``dagster api grpc``
location for probe jobs (deploy_probe/), ``dagster-daemon run`` and ``dagster-webserver``. They
share a DAGSTER_HOME whose dagster.yaml is the project's, with only host-specific values changed
(see :func:`instance_config`). Run containers use network "host", so they reach loopback services.

Test modules import the fixtures: ``from tests.integration.conftest_deploy import ...``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests import services

ROOT = Path(__file__).resolve().parents[2]
PROBE_DIR = Path(__file__).resolve().parent / "deploy_probe"
VENV_BIN = Path(sys.executable).parent
WFLO_LOCATION = "wflo"
PROBE_LOCATION = "wflo_probe"
MONITORING_POLL_SECONDS = 2


@pytest.fixture(scope="session")
def run_image(docker_host: str) -> str:
    """The user-code / run image, built by scripts/build_run_image.sh (a no-op when up to date)."""
    proc = subprocess.run([str(ROOT / "scripts" / "build_run_image.sh")], capture_output=True, text=True,
                          env={**os.environ, "DOCKER_HOST": docker_host}, timeout=1500)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build_run_image.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}",
                    pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


def instance_config(*, storage_dir: Path, docker_socket: str) -> dict:
    """The project's dagster.yaml, changed only where this host differs from the compose stack.

    - run monitoring polls every 2 s instead of 30 s (the tests wait for it);
    - run containers mount the test dockerd's socket, a host storage dir and the probe code at
      their host paths instead of /var/run/docker.sock and the named storage volume.
    """
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = MONITORING_POLL_SECONDS
    config["run_launcher"]["config"]["container_kwargs"]["volumes"] = [
        f"{docker_socket}:/var/run/docker.sock",
        f"{storage_dir}:{storage_dir}",
        f"{PROBE_DIR}:{PROBE_DIR}:ro",
    ]
    return config


@dataclass
class DagsterDeployment:
    """Handles to the running deployment, for tests to submit runs and inspect every side."""

    image: str
    home: Path
    env: dict[str, str]
    ledger_url: str
    kafka_bootstrap: str
    topic_prefix: str
    docker_host: str
    webserver_port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    instance: object = None

    def graphql(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.webserver_port, timeout=60)

    def logs(self, name: str, chars: int = 3000) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")[-chars:]

    def all_logs(self) -> str:
        return "\n".join(f"--- {name}.log\n{self.logs(name, 1500)}" for name in self.procs)

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{self.logs(name)}", pytrace=False)


def _start(dep: DagsterDeployment, name: str, args: list[str]) -> None:
    log = open(dep.home / f"{name}.log", "ab")
    dep.procs[name] = subprocess.Popen(args, env=dep.env, cwd=dep.home, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)


def _wait(what: str, check, dep: DagsterDeployment, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep.assert_alive()
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {timeout:.0f} s\n{dep.all_logs()}", pytrace=False)


def _locations_loaded(dep: DagsterDeployment) -> bool:
    import requests

    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus " \
            "locationOrLoadError { __typename } } } } }"
    url = f"http://127.0.0.1:{dep.webserver_port}/graphql"
    body = requests.post(url, json={"query": query}, timeout=10).json()
    entries = {e["name"]: e for e in body["data"]["workspaceOrError"]["locationEntries"]}
    for name in (WFLO_LOCATION, PROBE_LOCATION):
        entry = entries.get(name)
        if entry is None or entry["loadStatus"] != "LOADED":
            return False
        if entry["locationOrLoadError"]["__typename"] != "RepositoryLocation":
            pytest.fail(f"code location {name} failed to load:\n{dep.all_logs()}", pytrace=False)
    return True


def _migrate_in_container(dep: DagsterDeployment) -> None:
    """The compose ``migrate`` service: the image's own dagster.yaml and commands, on the host network."""
    import docker

    client = docker.DockerClient(base_url=dep.docker_host)
    env = {**{k: v for k, v in dep.env.items() if k.startswith(("DAGSTER_", "WFLO_"))},
           "DAGSTER_HOME": "/opt/dagster/home"}
    try:
        client.containers.run(dep.image, ["sh", "-c", "dagster instance migrate && wflo db upgrade"],
                              environment=env, network_mode="host", remove=True, stderr=True)
    except docker.errors.ContainerError as err:
        pytest.fail(f"migrate container failed: {err.stderr.decode(errors='replace')[-2000:]}", pytrace=False)
    finally:
        client.close()


@pytest.fixture(scope="module")
def dagster_deployment(run_image: str, sandbox_image: str, docker_host: str, postgres_url: str,
                       redis_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
                       ) -> Iterator[DagsterDeployment]:
    home = tmp_path_factory.mktemp("dagster-home")
    storage = home / "storage"
    (storage / "compute_logs").mkdir(parents=True)
    socket_path = urlsplit(docker_host).path
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(storage_dir=storage,
                                                                      docker_socket=socket_path)))
    wflo_port, probe_port, web_port = services.free_port(), services.free_port(), services.free_port()
    (home / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [
        {"grpc_server": {"host": "127.0.0.1", "port": wflo_port, "location_name": WFLO_LOCATION}},
        {"grpc_server": {"host": "127.0.0.1", "port": probe_port, "location_name": PROBE_LOCATION}},
    ]}))
    pg = urlsplit(postgres_url)
    prefix = f"deploy{uuid.uuid4().hex[:8]}"
    with services.scratch_database(postgres_url, "dagster") as dagster_db, \
            services.scratch_database(postgres_url, "ledger") as ledger_url, \
            pytest.MonkeyPatch.context() as mp:
        env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8",
            "DAGSTER_HOME": str(home), "DOCKER_HOST": docker_host,
            "DAGSTER_POSTGRES_HOST": pg.hostname, "DAGSTER_POSTGRES_PORT": str(pg.port),
            "DAGSTER_POSTGRES_USER": pg.username, "DAGSTER_POSTGRES_PASSWORD": pg.password or "",
            "DAGSTER_POSTGRES_DB": urlsplit(dagster_db).path.lstrip("/"),
            "DAGSTER_STORAGE_DIR": str(storage), "DAGSTER_COMPUTE_LOGS_DIR": str(storage / "compute_logs"),
            "DAGSTER_CURRENT_IMAGE": run_image, "DAGSTER_DOCKER_NETWORK": "host",
            "WFLO_DATABASE_URL": ledger_url, "WFLO_REDIS_URL": redis_url,
            "WFLO_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "WFLO_KAFKA_TOPIC_PREFIX": prefix,
            # Agent-written code runs in sandbox containers next to the run container, as in production.
            "WFLO_LLM_MODE": "replay", "WFLO_SANDBOX_BACKEND": "docker", "WFLO_SANDBOX_IMAGE": sandbox_image,
            "WFLO_OPENAI_API_KEY": "", "WFLO_ANTHROPIC_API_KEY": "",
        }
        dep = DagsterDeployment(run_image, home, env, ledger_url, kafka_bootstrap, prefix, docker_host,
                                web_port)
        try:
            _migrate_in_container(dep)
            _start(dep, "code-server", ["dagster", "code-server", "start", "-h", "127.0.0.1",
                                        "-p", str(wflo_port), "-m", "wflo_dagster.definitions",
                                        "--location-name", WFLO_LOCATION])
            _start(dep, "probe-server", ["dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(probe_port),
                                         "-f", str(PROBE_DIR / "probe_jobs.py"), "-d", str(PROBE_DIR),
                                         "--location-name", PROBE_LOCATION])
            _wait("code servers", lambda: services.wait_for_port(wflo_port, 0.2)
                  and services.wait_for_port(probe_port, 0.2), dep, 120)
            _start(dep, "daemon", ["dagster-daemon", "run", "-w", str(home / "workspace.yaml")])
            _start(dep, "webserver", ["dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port),
                                      "-w", str(home / "workspace.yaml")])
            _wait("webserver with both code locations", lambda: _locations_loaded(dep), dep, 180)

            from dagster import DagsterInstance
            from dagster._core.instance.ref import InstanceRef

            for key, value in env.items():  # the test process reads the same instance
                if key.startswith("DAGSTER_"):
                    mp.setenv(key, value)
            dep.instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
            _wait("daemon heartbeats", lambda: {"QUEUED_RUN_COORDINATOR", "MONITORING", "SENSOR"}
                  <= set(dep.instance.get_daemon_heartbeats()), dep, 120)
            yield dep
        finally:
            for proc in reversed(list(dep.procs.values())):
                services.stop_process(proc, timeout=20, group=True)
            if dep.instance is not None:
                _remove_run_containers(dep)
                dep.instance.dispose()


def _remove_run_containers(dep: DagsterDeployment) -> None:
    """Containers of this deployment's runs still around (auto_remove covers runs that ended)."""
    import docker

    run_ids = {run.run_id for run in dep.instance.get_runs()}
    client = docker.DockerClient(base_url=dep.docker_host)
    try:
        for container in client.containers.list(all=True, filters={"label": "io.wflo.role=run-worker"}):
            if container.labels.get("dagster/run_id") in run_ids:
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
    finally:
        client.close()
