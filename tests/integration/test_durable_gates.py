"""Approval gates on a real Dagster instance (Postgres storage), the approvals sensor evaluated for real."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import select

from tests.integration.durable_support import (
    active_runs,
    cli,
    durable_env,
    evaluate_sensor,
    launch,
    ledger_run,
    paid_calls,
    steps_of,
)
from wflo_core.keys import APPROVAL_STATUS_TAG
from wflo_core.ledger.models import OutboxEvent
from wflo_dagster.definitions import defs
from wflo_dagster.gates import approval_gate
from wflo_dagster.pipelines.reviewed_release import reviewed_release_job
from wflo_dagster.resources.llm import LLMResource
from wflo_dagster.sensors.approvals import approvals_sensor

pytestmark = pytest.mark.integration

SENSOR = defs.get_sensor_def("wflo_approvals")
JOB = "reviewed_release_job"


def approval_events(ledger) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    with ledger.transaction() as session:
        rows = session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.event_type.like("io.wflo.approval.%"))
            .order_by(OutboxEvent.id)
        ).all()
    return [(json.loads(p)["type"], json.loads(p)["data"]) for p in rows]


def run_to_gate(instance: dg.DagsterInstance, ledger) -> tuple[dg.ExecuteInProcessResult, dict]:  # type: ignore[no-untyped-def]
    result = defs.get_job_def(JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, "stopping at a gate is a clean end, not a failure"
    [listed] = json.loads(cli("approvals", "list", "--format", "json"))
    return result, listed


def test_gate_stops_cleanly_holds_no_run_slot_and_continues_after_cli_approval(
    fresh_postgres_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with durable_env(fresh_postgres_url, postgres_url, monkeypatch) as (instance, ledger):
        first, request = run_to_gate(instance, ledger)
        assert request["status"] == "pending" and request["step_key"] == "release_review"
        assert "def " in request["context"]["code"] or "import" in request["context"]["code"], (
            "the reviewer sees the code about to be published"
        )
        skipped = {e.step_key for e in first.all_events if e.event_type_value == "STEP_SKIPPED"}
        assert skipped == {"published_release"}
        assert instance.get_run_by_id(first.run_id).tags["wflo/waiting_approval"] == request["id"]
        assert active_runs(instance) == [], "waiting must hold no queued or started run"
        assert ledger_run(ledger, first.run_id).status == "waiting_approval"
        assert evaluate_sensor(SENSOR, instance, defs).run_requests == []

        assert "approved by ana" in cli(
            "approvals", "approve", request["id"], "--by", "ana", "--reason", "code reviewed"
        )
        [continuation] = evaluate_sensor(SENSOR, instance, defs).run_requests
        assert continuation.tags["wflo/parent_run_id"] == first.run_id
        assert continuation.tags["wflo/approval_id"] == request["id"]
        assert sorted(k.to_user_string() for k in continuation.asset_selection) == [
            "published_release",
            "release_review",
        ]
        second = launch(defs, instance, continuation)
        assert second.success
        assert Path(second.output_for_node("published_release")).is_file()
        assert evaluate_sensor(SENSOR, instance, defs).run_requests == [], "one continuation per approval"

        shown = json.loads(cli("approvals", "show", request["id"]))
        assert (shown["status"], shown["decided_by"], shown["decision_reason"]) == (
            "approved",
            "ana",
            "code reviewed",
        )
        assert shown["decided_at"] and shown["continuation_run_id"] == second.run_id
        assert [(t, d["decision"] if "decision" in d else None) for t, d in approval_events(ledger)] == [
            ("io.wflo.approval.requested", None),
            ("io.wflo.approval.decided", "approved"),
        ]
        assert ledger_run(ledger, first.run_id).status == "succeeded"
        assert ledger_run(ledger, second.run_id).parent_run_id == first.run_id
        assert set(steps_of(ledger, second.run_id)) == {"release_review", "published_release"}
        assert {run for run, _ in paid_calls(ledger)} == {first.run_id}, (
            "the continuation paid for nothing again"
        )


def test_rejection_stops_the_run_with_its_reason(
    fresh_postgres_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with durable_env(fresh_postgres_url, postgres_url, monkeypatch) as (instance, ledger):
        first, request = run_to_gate(instance, ledger)
        cli("approvals", "reject", request["id"], "--by", "bo", "--reason", "publishes secrets")
        assert evaluate_sensor(SENSOR, instance, defs).run_requests == []
        run = ledger_run(ledger, first.run_id)
        assert run.status == "canceled"
        assert run.status_reason.endswith("rejected by bo: publishes secrets")
        assert [d.get("decided_by") for _, d in approval_events(ledger)] == [None, "bo"]
        assert len(instance.get_runs()) == 1 and active_runs(instance) == []


@dg.asset
def draft() -> str:
    return "rm -rf /tmp/scratch"


quick_gate = approval_gate(
    "quick_gate",
    upstream=["draft"],
    reason="run a shell command",
    review_context=lambda draft: {"command": draft},
    timeout=timedelta(seconds=1),
    on_timeout="reject",
)


@dg.asset(deps=[quick_gate])
def executed() -> str:
    return "done"


quick_job = dg.define_asset_job("quick_job", selection=[draft, quick_gate, executed])
quick_defs = dg.Definitions(
    assets=[draft, quick_gate, executed],
    jobs=[quick_job],
    sensors=[approvals_sensor([quick_job])],
    resources={"llm": LLMResource()},
)


def test_timeout_rejects_and_marks_the_stopped_run(
    fresh_postgres_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with durable_env(fresh_postgres_url, postgres_url, monkeypatch) as (instance, ledger):
        first = quick_defs.get_job_def("quick_job").execute_in_process(instance=instance)
        sensor = quick_defs.get_sensor_def("wflo_approvals")
        time.sleep(1.2)
        assert evaluate_sensor(sensor, instance, quick_defs).run_requests == []
        [request] = json.loads(cli("approvals", "list", "--format", "json"))
        assert (request["status"], request["decided_by"]) == ("expired", "wflo:timeout")
        assert instance.get_run_by_id(first.run_id).tags[APPROVAL_STATUS_TAG] == "expired"
        run = ledger_run(ledger, first.run_id)
        assert run.status == "canceled" and "timeout policy rejects" in run.status_reason
        assert active_runs(instance) == []


def test_reviewed_release_job_is_a_sensor_target() -> None:
    assert reviewed_release_job.name in {t.job_name for t in SENSOR.targets}
