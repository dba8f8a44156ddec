"""A run budget with on_breach=ask: the breach opens an approval instead of failing; approval raises the
limit of that run only, and the continuation re-runs the stopped step."""

from __future__ import annotations

import json
from decimal import Decimal

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
)
from wflo_core.keys import WAITING_TAG
from wflo_core.ledger.models import Budget
from wflo_dagster.definitions import defs

pytestmark = pytest.mark.integration

SENSOR = defs.get_sensor_def("wflo_approvals")
ASK = {"wflo/budget_usd": "0.001", "wflo/on_breach": "ask"}


def run_budget(ledger, run_id: str) -> Budget:  # type: ignore[no-untyped-def]
    with ledger.transaction() as session:
        budget = session.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == run_id))
        session.expunge(budget)
        return budget


def test_budget_breach_asks_and_approval_raises_that_runs_limit_only(
    fresh_postgres_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFLO_CACHE_MODE", "never")  # each run pays: a cached answer would need no budget at all
    with durable_env(fresh_postgres_url, postgres_url, monkeypatch) as (instance, ledger):
        job = defs.get_job_def("reviewed_release_job")
        first = job.execute_in_process(instance=instance, tags=ASK, raise_on_error=False)
        assert first.success, "waiting for approval is not a failure: the run stops cleanly"
        assert not any(e.is_step_failure for e in first.all_events)
        materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
        assert "release_plan" in materialized and "release_code" not in materialized, (
            "the asking step yields nothing and the steps after it are skipped")
        assert instance.get_run_by_id(first.run_id).tags[WAITING_TAG]
        [request] = json.loads(cli("approvals", "list", "--format", "json"))
        assert (request["kind"], request["status"], request["step_key"]) == (
            "budget",
            "pending",
            "release_code",
        )
        context = request["context"]
        assert context["scope"] == "run" and Decimal(context["limit_usd"]) == Decimal("0.001")
        assert Decimal(context["spent_usd"]) > 0 and Decimal(context["requested_usd"]) > 0
        assert ledger_run(ledger, first.run_id).status == "waiting_approval"
        assert active_runs(instance) == []
        paid_before = paid_calls(ledger)
        assert paid_before == [(first.run_id, "release_plan")]

        cli("approvals", "approve", request["id"], "--by", "fin", "--reason", "worth the extra cents")
        [continuation] = evaluate_sensor(SENSOR, instance, defs).run_requests
        raise_to = Decimal(context["raise_limit_to_usd"])
        spent = run_budget(ledger, first.run_id).spent_usd
        assert Decimal(continuation.tags["wflo/budget_usd"]) == raise_to - spent
        second = launch(defs, instance, continuation)
        assert second.success, "the stopped step re-runs and the run goes on (to the review gate)"
        assert paid_calls(ledger) == [*paid_before, (second.run_id, "release_code")]
        assert run_budget(ledger, first.run_id).limit_usd == Decimal("0.001"), (
            "the stopped run's budget is unchanged"
        )
        assert run_budget(ledger, second.run_id).limit_usd == raise_to - spent
        with ledger.transaction() as session:
            shared = session.scalars(select(Budget).where(Budget.scope != "run")).all()
            assert all(b.limit_usd != raise_to for b in shared)

        other = job.execute_in_process(instance=instance, tags=ASK, raise_on_error=False)
        assert other.success and "release_code" not in {
            e.asset_key.to_user_string() for e in other.get_asset_materialization_events()
        }, "another run of the job keeps the original limit and asks again"
        assert run_budget(ledger, other.run_id).limit_usd == Decimal("0.001")
        statuses = {
            r["run_id"]: r["status"] for r in json.loads(cli("approvals", "list", "--format", "json"))
        }
        assert statuses[other.run_id] == "pending"
