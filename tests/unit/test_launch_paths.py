"""Budgets and attribution hold however a pipeline is launched, on the embedded default (replay cassette).

The example pipelines declare their run budget and team on the assets themselves, so a run that is
not launched through their job (the UI's "Materialize", ``dagster asset materialize --select``, a
schedule or sensor request, a backfill) is still limited and attributed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
from sqlalchemy import select

from wflo_core.calls import LLMRequest
from wflo_core.config import load_settings
from wflo_core.ledger.models import Budget, LLMCall, Run, Workflow
from wflo_core.services import shared_services
from wflo_dagster import LLMResource, SandboxResource, llm_asset
from wflo_dagster.definitions import defs
from wflo_dagster.pipelines import triage_agent
from wflo_dagster.pipelines.research_agent import research_assets


def _run_facts(run_id: str) -> dict[str, Any]:
    with shared_services(load_settings()) as services, services.ledger.transaction() as s:
        budget = s.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == run_id))
        workflow = s.scalar(select(Workflow.name).join(Run).where(Run.id == run_id))
        tags = [row.tags for row in s.scalars(select(LLMCall).where(LLMCall.run_id == run_id))]
    return {"limit": budget.limit_usd if budget else None, "workflow": workflow, "tags": tags}


def test_materialize_from_the_ui_path_has_the_pipelines_budget_and_team() -> None:
    """``materialize`` runs an implicit asset job with no job tags, as "Materialize" in the UI does."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(research_assets, instance=instance,
                                resources={"llm": LLMResource(), "sandbox": SandboxResource()})
    assert result.success
    facts = _run_facts(result.run_id)
    assert facts["limit"] == Decimal("0.50")
    assert facts["workflow"] == "assets:research_agent"
    assert facts["tags"] and all(t.get("team") == "research" for t in facts["tags"])


def test_dagster_asset_materialize_select_has_the_pipelines_budget(tmp_path) -> None:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").touch()
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "wflo_dagster.definitions",
         "--select", "group:triage_agent", "--partition", day],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with shared_services(load_settings()) as services, services.ledger.transaction() as s:
        (run_id,) = s.scalars(select(Run.id)).all()
    facts = _run_facts(run_id)
    assert facts["limit"] == Decimal("0.05") and facts["workflow"] == "assets:triage_agent"
    assert all(t.get("team") == "support" for t in facts["tags"])


def test_a_scheduled_run_has_the_pipelines_budget() -> None:
    schedule = defs.get_schedule_def("triage_agent_job_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(UTC))
        (request,) = schedule.evaluate_tick(context).run_requests or []
        result = defs.resolve_job_def("triage_agent_job").execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags)
    assert result.success
    assert _run_facts(result.run_id)["limit"] == Decimal("0.05")


def test_an_asset_budget_limits_each_materialization_and_a_new_value_applies_next_run() -> None:
    def define(budget: str) -> dg.AssetsDefinition:
        @llm_asset(name="summary", budget_usd=budget)
        def summary(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
            return _triage_call(context, llm)

        return summary

    with dg.instance_for_test() as instance:
        tight = dg.materialize([define("0.00001")], instance=instance, resources={"llm": LLMResource()},
                               raise_on_error=False)
        wide = dg.materialize([define("5")], instance=instance, resources={"llm": LLMResource()})
    assert not tight.success and wide.success, "the edited value applies from the next run"
    failure = next(e for e in tight.all_events if e.is_step_failure)
    assert "materialization budget 'summary@" in failure.event_specific_data.error.message
    with shared_services(load_settings()) as services, services.ledger.transaction() as s:
        limits = {b.scope_key: b.limit_usd for b in s.scalars(select(Budget).where(Budget.scope == "materialization"))}
    assert limits == {f"summary@{tight.run_id}": Decimal("0.00001"), f"summary@{wide.run_id}": Decimal("5")}


def _triage_call(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    """A call the shipped cassette answers."""
    ticket = triage_agent.inbox_for("2026-11-24")[0]
    provider, model = triage_agent.TRIAGE_MODEL
    return llm.complete(context, messages=triage_agent.triage_messages(ticket), provider=provider, model=model,
                        max_tokens=120, temperature=0.0).text


def test_a_generator_step_gets_its_cost_metadata_and_clean_failures() -> None:
    @llm_asset(name="streamed")
    def streamed(context: dg.AssetExecutionContext, llm: LLMResource):  # type: ignore[no-untyped-def]
        yield dg.Output(_triage_call(context, llm))

    with dg.instance_for_test() as instance:
        result = dg.materialize([streamed], instance=instance, resources={"llm": LLMResource()})
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
    assert metadata["wflo/llm_calls"].value == 1 and metadata["wflo/cost_usd"].value > 0


def test_a_sensor_requested_run_has_the_pipelines_budget() -> None:
    @dg.sensor(asset_selection=dg.AssetSelection.assets(*research_assets))
    def new_question(context: dg.SensorEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(run_key="q1")

    with dg.instance_for_test() as instance:
        request = new_question(dg.build_sensor_context(instance=instance))
        assert isinstance(request, dg.RunRequest)
        result = dg.materialize(research_assets, instance=instance, tags=request.tags,
                                resources={"llm": LLMResource(), "sandbox": SandboxResource()})
    assert result.success and _run_facts(result.run_id)["limit"] == Decimal("0.50")


def test_a_backfill_run_of_one_partition_has_the_pipelines_budget() -> None:
    day = "2026-11-24"
    with dg.instance_for_test() as instance:
        result = dg.materialize(triage_agent.triage_assets, instance=instance, partition_key=day,
                                tags={"dagster/backfill": "bf-1"}, resources={"llm": LLMResource()})
    assert result.success
    facts = _run_facts(result.run_id)
    assert facts["limit"] == Decimal("0.05") and facts["workflow"] == "assets:triage_agent"


def test_budget_day_usd_sets_the_limit_of_every_day(monkeypatch) -> None:
    monkeypatch.setenv("WFLO_BUDGET_DAY_USD", "0.25")
    with shared_services(load_settings()) as services, services.ledger.transaction() as s:
        (day,) = s.scalars(select(Budget).where(Budget.scope == "day")).all()
    assert (day.scope_key, day.limit_usd) == ("*", Decimal("0.25"))


def test_a_stream_reuses_an_answer_its_run_chain_already_paid_for() -> None:
    @llm_asset(name="streamer")
    def streamer(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
        ticket = triage_agent.inbox_for("2026-11-24")[0]
        provider, model = triage_agent.TRIAGE_MODEL
        request = LLMRequest(provider=provider, model=model, messages=tuple(triage_agent.triage_messages(ticket)),
                             max_tokens=120, temperature=0.0)
        return next(c.response for c in llm.stream(context, request) if c.response is not None).text

    with dg.instance_for_test() as instance:
        first = dg.materialize([streamer], instance=instance, resources={"llm": LLMResource()})
        again = dg.materialize([streamer], instance=instance, resources={"llm": LLMResource()},
                               tags={"wflo/parent_run_id": first.run_id})
    assert first.output_for_node("streamer") == again.output_for_node("streamer")
    with shared_services(load_settings()) as services, services.ledger.transaction() as s:
        rows = s.scalars(select(LLMCall.run_id)).all()
    assert rows == [first.run_id], "the continuation reused the paid answer: not sent, not charged"
