"""The fan-out triage agent on the replay cassette: one step per ticket, one budget for the whole run."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
from sqlalchemy import select

from wflo_core.config import load_settings
from wflo_core.ledger.models import Budget, LLMCall, Step
from wflo_core.ledger.store import Ledger
from wflo_dagster.pipelines.triage_agent import SAMPLE_INBOX, triage_agent_job, triage_assets
from wflo_dagster.resources.llm import LLMResource

TODAY = datetime.now(UTC).date().isoformat()
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def run_triage(instance: dg.DagsterInstance, **tags: str) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(assets=triage_assets, jobs=[triage_agent_job], resources={"llm": LLMResource()})
    return defs.resolve_job_def("triage_agent_job").execute_in_process(
        instance=instance, partition_key=TODAY, raise_on_error=False, tags=tags or None
    )


def test_every_ticket_gets_its_own_step_and_the_asset_reports_the_fan_outs_cost() -> None:
    with dg.instance_for_test() as instance:
        result = run_triage(instance)
    assert result.success
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as session:
        calls = session.scalars(select(LLMCall).where(LLMCall.run_id == result.run_id)).all()
        steps = session.scalars(select(Step).where(Step.run_id == result.run_id)).all()
    ledger.close()
    ticket_calls = [c for c in calls if "triage_ticket[" in (c.step_key or "")]
    assert sorted(c.step_key for c in ticket_calls) == sorted(
        f"ticket_triage.triage_ticket[{t['id']}]" for t in SAMPLE_INBOX
    )
    assert {s.step_key: s.status for s in steps if "triage_ticket[" in s.step_key} == {
        c.step_key: "succeeded" for c in ticket_calls
    }

    by_asset = {
        m.asset_key.to_user_string(): m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    fan_out_cost = sum((c.cost_usd for c in ticket_calls), Decimal(0))
    assert fan_out_cost > 0
    assert by_asset["ticket_triage"]["wflo/cost_usd"].value == float(fan_out_cost)
    assert by_asset["ticket_triage"]["wflo/llm_calls"].value == len(SAMPLE_INBOX)
    verdicts = result.output_for_node("ticket_triage")
    assert [v["priority"] for v in verdicts] == sorted(v["priority"] for v in verdicts)
    assert sum(by_asset["ticket_triage"][f"wflo/priority/{p}"].value for p in ("P1", "P2", "P3")) == 6
    assert "T1042" in result.output_for_node("triage_digest")


def test_one_run_budget_caps_the_whole_fan_out() -> None:
    limit = Decimal("0.0002")  # a ticket call holds ~$0.00012, settles at ~$0.00003: room for some, not six
    with dg.instance_for_test() as instance:
        result = run_triage(instance, **{"wflo/budget_usd": str(limit)})
        failures = [e for e in result.all_events if e.is_step_failure]
    assert not result.success
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as session:
        budget = session.scalar(
            select(Budget).where(Budget.scope == "run", Budget.scope_key == result.run_id)
        )
        billed = session.scalars(
            select(LLMCall).where(LLMCall.run_id == result.run_id, LLMCall.status == "settled")
        ).all()
    ledger.close()
    assert budget is not None and budget.limit_usd == limit
    assert 1 <= len(billed) < len(SAMPLE_INBOX)
    assert sum((c.cost_usd for c in billed), Decimal(0)) == budget.spent_usd <= limit
    assert failures and all("triage_ticket[" in e.step_key for e in failures)
    assert all("BudgetExceeded: run budget" in e.event_specific_data.error.message for e in failures)
