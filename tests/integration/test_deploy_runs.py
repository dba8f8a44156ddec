"""Runs launched for real by the production deployment: DockerRunLauncher, Postgres, daemon.

One deployment per module (see conftest_deploy.py): the compose stack's Dagster processes on this
host, launching every run in a container from the image scripts/build_run_image.sh builds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import docker
import pytest
import yaml
from dagster import DagsterEventType, DagsterRunStatus
from sqlalchemy import select

from tests.integration import conftest_deploy
from tests.integration.conftest_deploy import PROBE_LOCATION, ROOT, WFLO_LOCATION, DagsterDeployment
from wflo_core.events.envelope import decode_event
from wflo_core.events.outbox import PENDING
from wflo_core.ledger.models import LLMCall, OutboxEvent, Run, SandboxRun, Step
from wflo_core.ledger.store import Ledger
from wflo_core.steps.totals import COST_KEY

pytestmark = pytest.mark.integration

run_image = conftest_deploy.run_image
dagster_deployment = conftest_deploy.dagster_deployment

T = TypeVar("T")
IN_PROGRESS = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}


def eventually(what: str, probe: Callable[[], T | None], timeout: float, dep: DagsterDeployment) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the deployment's logs if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep.assert_alive()
        if value := probe():
            return value
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{dep.all_logs()}", pytrace=False)


def finished_run(dep: DagsterDeployment, run_id: str, timeout: float):
    return eventually(f"run {run_id} finished",
                      lambda: (r := dep.instance.get_run_by_id(run_id)) and r.is_finished and r, timeout, dep)


def open_ledger(dep: DagsterDeployment) -> Ledger:
    return Ledger(dep.ledger_url.replace("postgresql://", "postgresql+psycopg://", 1))


def ledger_run(dep: DagsterDeployment, run_id: str) -> tuple[Run | None, list[Step], list[LLMCall]]:
    ledger = open_ledger(dep)
    try:
        with ledger.transaction() as session:
            run = session.get(Run, run_id)
            steps = list(session.scalars(select(Step).where(Step.run_id == run_id)))
            calls = list(session.scalars(select(LLMCall).where(LLMCall.run_id == run_id)))
            session.expunge_all()
            return run, steps, calls
    finally:
        ledger.close()


def closed_ledger_run(dep: DagsterDeployment, run_id: str, status: str):
    """The ledger's view of the run once the close-out sensor gave it ``status``, else None."""
    found = ledger_run(dep, run_id)
    return found if found[0] is not None and found[0].status == status else None


def sandbox_runs(dep: DagsterDeployment, run_id: str) -> list[SandboxRun]:
    ledger = open_ledger(dep)
    try:
        with ledger.transaction() as session:
            return list(session.scalars(select(SandboxRun).where(SandboxRun.run_id == run_id)))
    finally:
        ledger.close()


def pending_outbox(dep: DagsterDeployment, run_id: str) -> int:
    ledger = open_ledger(dep)
    try:
        with ledger.transaction() as session:
            return len(list(session.scalars(select(OutboxEvent.id).where(
                OutboxEvent.key == run_id, *PENDING))))
    finally:
        ledger.close()


def kafka_events(dep: DagsterDeployment, run_id: str, until: Callable[[list], bool], timeout: float) -> list:
    """The CloudEvents of one run on ``<prefix>.events``, read from the beginning."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": dep.kafka_bootstrap, "auto.offset.reset": "earliest",
                         "group.id": f"deploy-test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    consumer.subscribe([f"{dep.topic_prefix}.events"])
    events: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(events):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            event = decode_event(message.value())
            if event.run_id == run_id:
                events.append(event)
    finally:
        consumer.close()
    return events


def submit(dep: DagsterDeployment, job: str, location: str, *, tags: dict[str, str] | None = None,
           run_config: dict | None = None) -> str:
    return dep.graphql().submit_job_execution(job, repository_location_name=location, tags=tags,
                                              run_config=run_config or {})


def test_graphql_submitted_job_runs_in_a_run_image_container_and_is_fully_accounted(
        dagster_deployment: DagsterDeployment) -> None:
    dep = dagster_deployment
    run_id = submit(dep, "research_agent_job", WFLO_LOCATION)

    run = finished_run(dep, run_id, timeout=300)
    records = dep.instance.all_logs(run_id)
    messages = [r.dagster_event.message for r in records if r.dagster_event and r.dagster_event.message]
    assert run.status == DagsterRunStatus.SUCCESS, "\n".join(messages)

    # Dagster: launched by the DockerRunLauncher, in a container of the run image
    assert run.tags["dagster/image"] == dep.image
    container_id = run.tags["docker/container_id"]
    launches = [r.message for r in records if "Launching run in a new container" in (r.message or "")]
    assert len(launches) == 1
    assert launches[0].endswith(f"Launching run in a new container {container_id} with image {dep.image}")
    cost_by_step = {r.step_key: r.asset_materialization.metadata[COST_KEY].value for r in records
                    if r.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION}
    step_keys = set(cost_by_step)
    llm_steps = {"research_plan", "source_notes", "analysis_code", "research_summary"}
    assert step_keys == llm_steps | {"analysis_result"}  # analysis_result runs the agent's code
    assert step_keys <= {r.step_key for r in records if r.dagster_event_type == DagsterEventType.STEP_SUCCESS}
    assert not [r for r in records if r.dagster_event_type == DagsterEventType.STEP_FAILURE]

    # wflo ledger: written from inside the container, consistent with the Dagster metadata
    ledger_run_row, steps, calls = eventually("wflo run closed out as succeeded",
                                              lambda: closed_ledger_run(dep, run_id, "succeeded"), 120, dep)
    assert ledger_run_row.workflow_id is not None and ledger_run_row.ended_at is not None
    assert {s.step_key for s in steps} == step_keys
    assert {s.status for s in steps} == {"succeeded"}
    assert calls and {c.status for c in calls} == {"settled"}
    for step_key in step_keys:
        step_cost = sum((c.cost_usd for c in calls if c.step_key == step_key), Decimal(0))
        assert (step_cost > 0) == (step_key in llm_steps), step_key
        assert float(step_cost) == cost_by_step[step_key], step_key
    # the agent's code ran in a Docker sandbox container started from inside the run container
    (sandboxed,) = sandbox_runs(dep, run_id)
    assert (sandboxed.backend, sandboxed.exit_code, sandboxed.step_key) == ("docker", 0, "analysis_result")

    # Kafka: one event per recorded call, the step and run ends, all keyed to this run
    call_keys = {c.idempotency_key for c in calls}
    events = kafka_events(dep, run_id, timeout=90, until=lambda evs: "io.wflo.run.succeeded" in
                          {e.type for e in evs})
    assert events, (f"no events for run {run_id} on {dep.topic_prefix}.events; "
                    f"{pending_outbox(dep, run_id)} of its outbox rows are unpublished: "
                    "is the outbox relay sensor running in the deployment?")
    by_type: dict[str, list] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    assert {e.data["idempotency_key"] for e in by_type.get("io.wflo.llm_call.settled", [])} == call_keys
    assert {e.data["step_key"] for e in by_type.get("io.wflo.step.succeeded", [])} == step_keys
    assert [e.data["step_key"] for e in by_type["io.wflo.sandbox.finished"]] == ["analysis_result"]
    [run_succeeded] = by_type["io.wflo.run.succeeded"]
    assert Decimal(run_succeeded.data["cost_usd"]) == sum((c.cost_usd for c in calls), Decimal(0))
    assert len({e.id for e in events}) == len(events)


def test_killed_run_container_fails_the_run_and_closes_the_wflo_run(
        dagster_deployment: DagsterDeployment) -> None:
    dep = dagster_deployment
    run_id = submit(dep, "hanging_agent_job", PROBE_LOCATION,
                    run_config={"ops": {"open_wflo_run_then_nap": {"config": {"seconds": 600}}}})
    eventually("the step opened the wflo run record", lambda: ledger_run(dep, run_id)[0] is not None,
               timeout=180, dep=dep)
    run = dep.instance.get_run_by_id(run_id)
    assert run.status == DagsterRunStatus.STARTED

    client = docker.DockerClient(base_url=dep.docker_host)
    try:
        client.containers.get(run.tags["docker/container_id"]).kill()
    finally:
        client.close()

    run = finished_run(dep, run_id, timeout=60)
    assert run.status == DagsterRunStatus.FAILURE
    [failure] = [r for r in dep.instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)]
    reason = failure.dagster_event.message
    # Found while the engine removes it (auto_remove) or already gone: either way the worker is dead.
    assert reason.startswith(("Detected run worker status FAILED: 'Container status is",
                              f"Detected run worker status NOT_FOUND: 'Could not find container with ID "
                              f"{run.tags['docker/container_id']}")), reason

    wflo_run, steps, _ = eventually("wflo run closed out as failed",
                                    lambda: closed_ledger_run(dep, run_id, "failed"), 120, dep)
    assert wflo_run.status_reason == reason
    assert wflo_run.ended_at is not None
    assert [(s.step_key, s.status) for s in steps] == [("open_wflo_run_then_nap", "crashed")]


def test_tag_concurrency_limit_holds_while_runs_queue(dagster_deployment: DagsterDeployment) -> None:
    dep = dagster_deployment
    limits = yaml.safe_load(Path(ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    [agent_limit] = [rule for rule in limits["tag_concurrency_limits"] if rule["key"] == "wflo/agent"]
    assert agent_limit["value"] == {"applyLimitPerUniqueValue": True}
    limit = agent_limit["limit"]
    tags = {"wflo/agent": f"probe-{uuid.uuid4().hex[:8]}"}
    run_ids = [submit(dep, "nap_job", PROBE_LOCATION, tags=tags,
                      run_config={"ops": {"nap": {"config": {"seconds": 4}}}}) for _ in range(limit + 2)]

    samples: list[tuple[int, int]] = []  # (in progress, queued)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        dep.assert_alive()
        statuses = [dep.instance.get_run_by_id(run_id).status for run_id in run_ids]
        samples.append((sum(s in IN_PROGRESS for s in statuses), statuses.count(DagsterRunStatus.QUEUED)))
        if all(s in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) for s in statuses):
            break
        time.sleep(0.25)
    assert statuses == [DagsterRunStatus.SUCCESS] * len(run_ids), json.dumps([str(s) for s in statuses])

    assert max(busy for busy, _ in samples) == limit, samples
    assert any(busy == limit and queued > 0 for busy, queued in samples), "the limit never held runs back"

    # The same from the recorded timestamps: never more than `limit` of these runs alive at once.
    records = dep.instance.get_run_records(filters=None)
    spans = [(r.start_time, r.end_time) for r in records if r.dagster_run.run_id in run_ids]
    assert len(spans) == len(run_ids) and all(start and end for start, end in spans)
    peak = max(sum(1 for start, end in spans if start <= t < end) for t, _ in spans)
    assert peak <= limit, spans
