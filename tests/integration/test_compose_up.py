"""docker-compose.yml brought up for real, unchanged, on the test dockerd, from a cold start.

Only the infrastructure images are swapped (POSTGRES_IMAGE, REDIS_IMAGE, KAFKA_IMAGE) for stand-ins
built without a registry by docker/standins/build.sh; the user-code image is the one
scripts/build_run_image.sh builds. Everything else (services, commands, healthchecks, depends_on,
networks, volumes, env wiring) is the shipped file with the documented .env values.

Reaching the stack: the webserver is published on 127.0.0.1 as shipped. dockerd runs with
--iptables=false, so no NAT rule carries the port; Docker's userland proxy (docker-proxy) does,
which this test relies on and checks. Postgres and Kafka are not published; the test reaches them
at their addresses on the stack's bridge network (created by compose on the test dockerd), which
the host routes to directly, exactly as any other member of that network would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import docker
import pytest
import requests
from sqlalchemy import select

from tests import services
from tests.integration import conftest_deploy
from tests.integration.conftest_deploy import ROOT
from wflo_core.events.envelope import decode_event
from wflo_core.ledger.models import LLMCall, Run, SandboxRun, Step
from wflo_core.ledger.store import Ledger
from wflo_core.sandbox.docker_labels import LABEL as SANDBOX_LABEL
from wflo_core.sandbox.docker_labels import OWNER_LABEL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2700)]

run_image = conftest_deploy.run_image

T = TypeVar("T")
# Names the compose file fixes (dagster.yaml and the container context refer to them), so two
# stacks cannot share one engine: a lock serialises test sessions on this machine.
FIXED_NETWORK = "wflo_network"
FIXED_VOLUME = "wflo_dagster_storage"
LOCK_FILE = Path("/tmp/wflo-compose-stack.lock")
DAGSTER_SERVICES = ("migrate", "user-code", "webserver", "daemon")
UP_TIMEOUT = 900


def compose_implementation() -> tuple[list[str], str]:
    """The Compose v2 plugin when the docker CLI has it, else Debian's docker-compose (installed)."""
    plugin = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if plugin.returncode == 0:
        return ["docker", "compose"], f"docker compose plugin {plugin.stdout.strip()}"
    services.ensure_command("docker-compose", "docker-compose")
    version = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True)
    return ["docker-compose"], f"Debian docker-compose {version.stdout.strip()}"


@pytest.fixture(scope="module")
def standin_images(docker_host: str) -> dict[str, str]:
    proc = subprocess.run([str(ROOT / "docker" / "standins" / "build.sh")], capture_output=True, text=True,
                          env={**os.environ, "DOCKER_HOST": docker_host}, timeout=1500)
    if proc.returncode != 0:
        pytest.fail(f"docker/standins/build.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    return dict(line.split("=", 1) for line in proc.stdout.split())


@dataclass
class Stack:
    command: list[str]
    implementation: str
    project: str
    env: dict[str, str]
    client: docker.DockerClient
    webserver_port: int

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.command, "-f", str(ROOT / "docker-compose.yml"), "-p", self.project, *args],
                              capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(self.command)} {' '.join(args)} failed:\n{proc.stderr[-3000:]}\n{self.logs()}",
                        pytrace=False)
        return proc

    def containers(self, **filters: str) -> list:
        label = f"com.docker.compose.project={self.project}"
        return self.client.containers.list(all=True, filters={"label": label, **filters})

    def container(self, service: str):
        [found] = self.containers(label=f"com.docker.compose.service={service}")
        found.reload()
        return found

    def logs(self) -> str:
        parts = []
        for container in self.containers():
            service = container.labels.get("com.docker.compose.service")
            with contextlib.suppress(docker.errors.APIError):
                parts.append(f"--- {service} ({container.status})\n"
                             f"{container.logs(tail=40).decode(errors='replace')}")
        return "\n".join(parts)

    def address(self, service: str) -> str:
        return self.container(service).attrs["NetworkSettings"]["Networks"][FIXED_NETWORK]["IPAddress"]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        url = f"http://127.0.0.1:{self.webserver_port}/graphql"
        body = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60).json()
        assert "errors" not in body, body
        return body["data"]


class EngineEvents:
    """Every container and network event of the engine, recorded live from before ``up``: the engine
    keeps only its last 256 events for ``since`` queries, and healthchecks alone produce more."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.events: list[dict] = []
        self._stream = client.events(decode=True, filters={"type": ["container", "network"]})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            for event in self._stream:
                self.events.append(event)

    def close(self) -> None:
        self._stream.close()
        self._thread.join(10)

    def of(self, **attributes: str) -> list[dict]:
        return [e for e in list(self.events)
                if all(e["Actor"]["Attributes"].get(k) == v for k, v in attributes.items())]


def eventually(what: str, probe: Callable[[], T | None], timeout: float, stack: Stack) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := probe():
                return value
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{stack.logs()}", pytrace=False)


@pytest.fixture
def stack(run_image: str, sandbox_image: str, standin_images: dict[str, str], docker_host: str) -> Iterator[Stack]:
    command, implementation = compose_implementation()
    project = f"wfloit{uuid.uuid4().hex[:8]}"
    client = docker.DockerClient(base_url=docker_host)
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "DOCKER_HOST": docker_host,
        # what .env would hold (see .env.example)
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16), "USER_CODE_IMAGE": run_image,
        "WFLO_SANDBOX_IMAGE": sandbox_image, "WEBSERVER_PORT": str(services.free_port()),
        "WFLO_KAFKA_TOPIC_PREFIX": project, "DOCKER_SOCKET": urlsplit(docker_host).path, **standin_images,
    }
    LOCK_FILE.touch(exist_ok=True)
    with open(LOCK_FILE) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, existing in ((FIXED_NETWORK, client.networks.list(names=[FIXED_NETWORK])),
                               (FIXED_VOLUME, client.volumes.list(filters={"name": FIXED_VOLUME}))):
            if [e for e in existing if e.name == name]:
                client.close()
                pytest.fail(f"{name} already exists on {docker_host}: another compose stack is up there; "
                            f"take it down (docker compose down -v) and rerun", pytrace=False)
        try:
            yield Stack(command, implementation, project, env, client, int(env["WEBSERVER_PORT"]))
        finally:
            _tear_down(client, command, project, env)
            client.close()


def _tear_down(client: docker.DockerClient, command: list[str], project: str, env: dict[str, str]) -> None:
    """Whatever the test got to: run containers still going (and the sandboxes they started) hold the
    stack's network and storage volume, so they go first, then ``down -v``, then any leftover."""
    with contextlib.suppress(docker.errors.NotFound):
        for container in client.networks.get(FIXED_NETWORK).containers:
            if container.labels.get("com.docker.compose.project") != project:
                for sandbox in client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}):
                    if sandbox.labels.get(OWNER_LABEL, "").startswith(f"{container.id[:12]}:"):
                        with contextlib.suppress(docker.errors.APIError):
                            sandbox.remove(force=True)
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
    with contextlib.suppress(Exception):
        subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "-p", project, "down", "-v",
                        "--remove-orphans", "-t", "10"], capture_output=True, env=env, cwd=ROOT, timeout=300)
    label = f"com.docker.compose.project={project}"
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    for network in [*client.networks.list(filters={"label": label}), *client.networks.list(names=[FIXED_NETWORK])]:
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
    volumes = [*client.volumes.list(filters={"label": label}), *client.volumes.list(filters={"name": FIXED_VOLUME})]
    for volume in volumes:
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)


def test_compose_stack_cold_start_runs_an_agent_job_end_to_end(stack: Stack, run_image: str,
                                                               sandbox_image: str) -> None:
    engine = EngineEvents(stack.client)
    try:
        _cold_start_and_first_run(stack, engine, run_image, sandbox_image)
    finally:
        engine.close()


def _cold_start_and_first_run(stack: Stack, engine: EngineEvents, run_image: str, sandbox_image: str) -> None:
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", timeout=UP_TIMEOUT)

    def healthy() -> bool:
        return all(stack.container(s).attrs["State"].get("Health", {}).get("Status") == "healthy"
                   for s in ("webserver", "daemon"))

    eventually("webserver and daemon healthy", healthy, UP_TIMEOUT, stack)
    healthy_after = time.monotonic() - started

    # -- cold-start order, from the engine's event stream: postgres healthy -> migrate starts and
    #    exits 0 -> user code starts and turns healthy -> webserver and daemon start
    state = {s: stack.container(s).attrs["State"] for s in (*DAGSTER_SERVICES, "postgres", "redis", "kafka")}
    assert (state["migrate"]["Status"], state["migrate"]["ExitCode"]) == ("exited", 0), stack.logs()
    first: dict[tuple[str, str], int] = {}
    for event in engine.of(**{"com.docker.compose.project": stack.project}):
        key = (event["Actor"]["Attributes"].get("com.docker.compose.service", ""), event["Action"])
        first.setdefault(key, event["timeNano"])
    order = [("postgres", "health_status: healthy"), ("migrate", "start"), ("migrate", "die"),
             ("user-code", "start"), ("user-code", "health_status: healthy")]
    assert set(order) <= set(first), sorted(first)
    assert [first[k] for k in order] == sorted(first[k] for k in order), first
    for name in ("webserver", "daemon"):
        assert first[(name, "start")] > first[("user-code", "health_status: healthy")], name
    for name in ("postgres", "redis", "kafka", "user-code"):
        assert state[name]["Health"]["Status"] == "healthy", name
    # the infrastructure really is the stand-ins, and only the webserver publishes a port, on loopback
    for name, variable in (("postgres", "POSTGRES_IMAGE"), ("redis", "REDIS_IMAGE"), ("kafka", "KAFKA_IMAGE")):
        assert stack.container(name).attrs["Config"]["Image"] == stack.env[variable]
    published = {s: stack.container(s).attrs["HostConfig"]["PortBindings"] or {} for s in state}
    assert {s for s, ports in published.items() if ports} == {"webserver"}
    assert published["webserver"] == {"3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.webserver_port)}]}

    # -- a job submitted through the webserver's GraphQL API, launched by the daemon in a run container
    from dagster_graphql import DagsterGraphQLClient

    graphql = DagsterGraphQLClient("127.0.0.1", port_number=stack.webserver_port, timeout=60)
    eventually("the wflo code location loaded in the webserver",
               lambda: "research_agent_job" in json.dumps(stack.graphql(
                   "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }")),
               300, stack)
    run_id = graphql.submit_job_execution("research_agent_job", repository_location_name="wflo", run_config={})
    status = eventually("the run finished",
                        lambda: (s := graphql.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s,
                        1500, stack)
    first_success_after = time.monotonic() - started
    run = stack.graphql("""query ($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value }
        eventConnection(afterCursor: null, limit: 5000) { events { __typename ... on MessageEvent { message } } }
        } } }""", {"id": run_id})["runOrError"]
    messages = [e.get("message") or "" for e in run["eventConnection"]["events"]]
    assert status == "SUCCESS", "\n".join(messages[-30:]) + stack.logs()
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/image"] == run_image
    container_id = tags["docker/container_id"]
    [launch] = [m for m in messages if "Launching run in a new container" in m]
    assert launch.endswith(f"Launching run in a new container {container_id} with image {run_image}"), launch

    # the engine's own record of that container: started from the run image on the stack's network,
    # exited 0 and (auto_remove) removed
    def run_container_events() -> list[dict] | None:  # the run is SUCCESS just before its process exits
        events = [e for e in engine.of(**{"dagster/run_id": run_id}) if e["id"] == container_id]
        return events if {"create", "start", "die", "destroy"} <= {e["Action"] for e in events} else None

    events = eventually("the run container exited and was removed", run_container_events, 180, stack)
    [died] = [e for e in events if e["Action"] == "die"]
    assert died["Actor"]["Attributes"]["exitCode"] == "0"
    assert died["Actor"]["Attributes"]["image"] == run_image
    networks = [e for e in engine.of(container=container_id) if e["Action"] == "connect"]
    assert {e["Actor"]["Attributes"]["name"] for e in networks} == {FIXED_NETWORK}

    # -- the ledger in the compose Postgres (reached at its address on the stack's network)
    pg_url = (f"postgresql+psycopg://wflo:{stack.env['POSTGRES_PASSWORD']}@{stack.address('postgres')}:5432/wflo")
    ledger = Ledger(pg_url)
    try:
        def closed() -> tuple | None:
            with ledger.transaction() as session:
                row = session.get(Run, run_id)
                if row is None or row.status != "succeeded":
                    return None
                steps = list(session.scalars(select(Step).where(Step.run_id == run_id)))
                calls = list(session.scalars(select(LLMCall).where(LLMCall.run_id == run_id)))
                sandboxed = list(session.scalars(select(SandboxRun).where(SandboxRun.run_id == run_id)))
                session.expunge_all()
                return row, steps, calls, sandboxed

        ledger_run, steps, calls, sandboxed = eventually("the ledger run closed out as succeeded", closed, 180, stack)
    finally:
        ledger.close()
    assert {s.status for s in steps} == {"succeeded"} and len(steps) == 5
    assert calls and {c.status for c in calls} == {"settled"}
    total = sum((c.cost_usd for c in calls), Decimal(0))
    assert total > 0
    # -- the sandbox step ran in a Docker sandbox container, started from inside the run container
    [sandbox_row] = sandboxed
    assert (sandbox_row.backend, sandbox_row.exit_code, sandbox_row.step_key) == ("docker", 0, "analysis_result")
    sandbox_events = [e for e in engine.of(**{SANDBOX_LABEL: "1"}) if e["Action"] == "start"]
    owners = {e["Actor"]["Attributes"][OWNER_LABEL].rpartition(":")[0] for e in sandbox_events}
    assert container_id[:12] in owners, (owners, container_id)
    assert {e["Actor"]["Attributes"]["image"] for e in sandbox_events} == {sandbox_image}

    # -- its events on the compose Kafka
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": f"{stack.address('kafka')}:9092", "auto.offset.reset": "earliest",
                         "group.id": f"compose-test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    consumer.subscribe([f"{stack.project}.events"])
    seen: list = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and "io.wflo.run.succeeded" not in {e.type for e in seen}:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            if (event := decode_event(message.value())).run_id == run_id:
                seen.append(event)
    finally:
        consumer.close()
    types = [e.type for e in seen]
    assert types.count("io.wflo.llm_call.settled") == len(calls), types
    assert types.count("io.wflo.sandbox.finished") == 1
    [run_event] = [e for e in seen if e.type == "io.wflo.run.succeeded"]
    assert Decimal(run_event.data["cost_usd"]) == total

    # -- down -v: nothing of the stack is left on the engine
    stack.compose("down", "-v", "--remove-orphans", "-t", "10")
    project_label = f"com.docker.compose.project={stack.project}"
    assert stack.client.containers.list(all=True, filters={"label": project_label}) == []
    assert stack.client.containers.list(all=True, filters={"label": f"dagster/run_id={run_id}"}) == []
    assert stack.client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}) == [] or all(
        c.labels.get(OWNER_LABEL, "").rpartition(":")[0] != container_id[:12]
        for c in stack.client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}))
    assert stack.client.networks.list(filters={"label": project_label}) == []
    assert [n for n in stack.client.networks.list(names=[FIXED_NETWORK]) if n.name == FIXED_NETWORK] == []
    assert stack.client.volumes.list(filters={"label": project_label}) == []
    assert [v for v in stack.client.volumes.list(filters={"name": FIXED_VOLUME}) if v.name == FIXED_VOLUME] == []

    print(f"\ncompose implementation: {stack.implementation}; cold start (images built): "
          f"webserver+daemon healthy after {healthy_after:.1f} s, first successful run after "
          f"{first_success_after:.1f} s")
