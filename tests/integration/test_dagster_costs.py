"""Cost tracking through Dagster for real: step processes, hooks, metadata, ledger on Postgres."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import func, select

from tests.conftest import REPO_ROOT, use_live_ledger
from tests.integration.jobs import budgeted
from wflo_core.budgets import BudgetBook
from wflo_core.ledger.models import BudgetHold, LLMCall, OutboxEvent, Step
from wflo_core.ledger.rollups import run_total
from wflo_core.ledger.store import Ledger
from wflo_core.runs.close import close_run

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(postgres_ledger: Ledger, fresh_postgres_url: str, llm_server, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    use_live_ledger(monkeypatch, fresh_postgres_url, llm_server)
    monkeypatch.setenv("WFLO_RETRY_BASE_DELAY_SECONDS", "0.01")
    monkeypatch.chdir(REPO_ROOT)  # step processes re-import the job module from the working directory
    return postgres_ledger


def _run(job_fn, instance: dg.DagsterInstance) -> dg.ExecutionResult:
    result = dg.execute_job(dg.reconstructable(job_fn), instance=instance, raise_on_error=False)
    return result


def test_parallel_steps_under_one_budget_the_breaching_step_fails_clearly(ledger, llm_server) -> None:
    with dg.instance_for_test() as instance:
        result = _run(budgeted.budget_job, instance)
        assert not result.success
        failures = [e for e in result.all_events if e.is_step_failure]
        assert [e.step_key for e in failures] == ["costly_step"]
        message = failures[0].event_specific_data.error.message
        assert "BudgetExceeded: run budget" in message and "limit $0.002" in message
        cheap = result.asset_materializations_for_node("cheap_step")[0].metadata

    assert llm_server.request_count() == 1  # the costly call was never sent
    with ledger.transaction() as s:
        calls = list(s.scalars(select(LLMCall)))
        steps = {st.step_key: st.status for st in s.scalars(select(Step))}
        total = run_total(s, result.run_id)
        usage = BudgetBook(ledger).usage(s)
    assert [(c.step_key, c.status) for c in calls] == [("cheap_step", "settled")]
    assert steps == {"cheap_step": "succeeded", "costly_step": "failed"}
    assert total == calls[0].cost_usd > 0
    assert Decimal(str(cheap["wflo/cost_usd"].value)) == total
    assert cheap["wflo/llm_calls"].value == 1 and cheap["wflo/input_tokens"].value == calls[0].input_tokens
    run_budget = next(u for u in usage if u.scope == "run")
    assert run_budget.spent_usd == total and run_budget.held_usd == 0


def test_a_later_step_opens_and_closes_with_its_own_budget_and_events(ledger, llm_server) -> None:
    """The second step runs in its own process after its run is recorded (on Postgres it opens and closes
    in one statement each): its row, its materialization budget and its events are all there."""
    with dg.instance_for_test() as instance:
        result = _run(budgeted.chain_job, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "capped_step"
    assert "BudgetExceeded: materialization budget" in failure.event_specific_data.error.message
    assert llm_server.request_count() == 1  # capped_step's call was refused before sending
    with ledger.transaction() as s:
        steps = {st.step_key: (st.attempt, st.status, st.ended_at is not None) for st in s.scalars(select(Step))}
        budgets = {(u.scope, u.scope_key): u.limit_usd for u in BudgetBook(ledger).usage(s)}
        events = sorted(s.scalars(select(OutboxEvent.event_type)))
    assert steps == {"cheap_step": (0, "succeeded", True), "capped_step": (0, "failed", True)}
    assert budgets[("materialization", f"capped_step@{result.run_id}")] == Decimal("0.00001")
    assert events.count("io.wflo.step.started") == 2 and events.count("io.wflo.run.started") == 1
    assert "io.wflo.step.succeeded" in events and "io.wflo.step.failed" in events


def test_op_retries_record_each_physical_call_once(ledger, llm_server) -> None:
    with dg.instance_for_test() as instance:
        result = _run(budgeted.flaky_job, instance)
    assert result.success
    assert llm_server.request_count() == 2
    with ledger.transaction() as s:
        rows = list(s.scalars(select(LLMCall).order_by(LLMCall.id)))
        attempts = sorted((st.attempt, st.status) for st in s.scalars(select(Step)))
    assert len(rows) == 2 and len({r.idempotency_key for r in rows}) == 2
    assert attempts == [(0, "retried"), (1, "succeeded")]


def test_killed_step_process_loses_nothing_and_counts_nothing_twice(ledger, llm_server, monkeypatch) -> None:
    monkeypatch.setenv(budgeted.KILL_FLAG, "1")
    with dg.instance_for_test() as instance:
        result = _run(budgeted.killed_job, instance)
    assert not result.success
    assert llm_server.request_count() == 1
    # The run-status sensor's close-out (hooks never fire for a killed process):
    assert close_run(ledger, BudgetBook(ledger), result.run_id, "killed_job", "failed", "step process killed")
    assert not close_run(ledger, BudgetBook(ledger), result.run_id, "killed_job", "failed", "again")
    with ledger.transaction() as s:
        assert s.scalar(select(func.count(LLMCall.id))) == 1
        assert s.scalar(select(Step.status).where(Step.step_key == "killed_step")) == "crashed"
        assert s.scalar(select(func.count(BudgetHold.id)).where(BudgetHold.status == "held")) == 0
        assert run_total(s, result.run_id) == s.scalar(select(LLMCall.cost_usd))
