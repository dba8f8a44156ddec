"""Cost in the Dagster UI: the daily cost report, per-asset cost checks and per-run cost tags."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from wflo_core.config import load_settings
from wflo_core.errors import ConfigError
from wflo_core.keys import RUN_CALLS_TAG, RUN_COST_TAG
from wflo_core.ledger.rollups import cost_rollup, run_total
from wflo_core.ledger.store import Ledger
from wflo_core.services import shared_services
from wflo_dagster.checks import cost_check
from wflo_dagster.decorators import llm_asset
from wflo_dagster.pipelines import research_agent
from wflo_dagster.pipelines.cost_report import TOTAL_KEY, daily_cost_report
from wflo_dagster.resources.llm import LLMResource
from wflo_dagster.resources.sandbox import SandboxResource
from wflo_dagster.sensors.run_status import close_out_run

pytestmark = pytest.mark.usefixtures("bubblewrap")  # the research agent runs its code in the sandbox

TODAY = datetime.now(UTC).date()


def run_research(
    instance: dg.DagsterInstance, checks: list[dg.AssetChecksDefinition]
) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions(
        assets=research_agent.research_assets,
        asset_checks=checks,
        jobs=[research_agent.research_agent_job],
        resources={"llm": LLMResource(), "sandbox": SandboxResource()},
    )
    return defs.resolve_job_def("research_agent_job").execute_in_process(
        instance=instance, raise_on_error=False
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.asset_check_evaluation_data.asset_key.to_user_string(): e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def ledger_cost_by_asset(run_id: str) -> dict[str, Decimal]:
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as session:
        by_asset = {r.key: r.cost_usd for r in cost_rollup(session, "asset", run_id=run_id)}
    ledger.close()
    return by_asset


def plan_call(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    """The research plan's call (answered from the demo cassette), for assets made here."""
    provider, model = research_agent.PLANNER_MODEL
    return llm.complete(context, messages=research_agent.plan_messages(research_agent.QUESTION),
                        provider=provider, model=model, max_tokens=300, temperature=0.0).text


def test_declared_cost_checks_are_judged_in_the_assets_own_steps() -> None:
    with dg.instance_for_test() as instance:
        result = run_research(instance, [])
        steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert result.success
    evaluations = check_results(result)
    by_asset = ledger_cost_by_asset(result.run_id)
    declared = {spec.asset_key.to_user_string(): spec for a in research_agent.research_assets
                for spec in a.check_specs}
    assert set(declared) == {"research_plan", "source_notes", "analysis_code", "research_summary"}
    assert set(evaluations) == set(declared)
    assert steps == {a.key.to_user_string() for a in research_agent.research_assets}  # no step per check
    for asset, evaluation in evaluations.items():
        limit = Decimal(str(evaluation.metadata["max_usd"].value))
        assert evaluation.passed == (by_asset[asset] <= limit) and evaluation.passed
        assert evaluation.metadata["cost_usd"].value == float(by_asset[asset]) > 0
        assert f"${by_asset[asset]} within the ${limit}" in evaluation.description


def test_a_declared_cost_check_fails_over_its_threshold_without_failing_the_run() -> None:
    tight = llm_asset(name="tight_plan", max_cost_usd="0.0000001")(plan_call)
    with dg.instance_for_test() as instance:
        result = dg.materialize([tight], instance=instance, resources={"llm": LLMResource()}, raise_on_error=False)
    assert result.success
    cost = ledger_cost_by_asset(result.run_id)["tight_plan"]
    (evaluation,) = check_results(result).values()
    assert cost > Decimal("0.0000001")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert f"${cost} over the $0.0000001 per-materialization threshold" in evaluation.description
    assert result.output_for_node("tight_plan")  # the asset's value is still there


def code_call(context: dg.AssetExecutionContext, plain_plan: str, llm: LLMResource) -> str:
    """The analysis code's call on the plan (answered from the demo cassette)."""
    provider, model = research_agent.CODER_MODEL
    return llm.complete(context, messages=research_agent.code_messages(plain_plan), provider=provider,
                        model=model, max_tokens=500, temperature=0.0).text


def test_standalone_cost_checks_read_the_ledger_and_judge_each_asset() -> None:
    plain = [llm_asset(name="plain_plan")(plan_call), llm_asset(name="plain_code")(code_call)]
    checks = [cost_check(plain[0], "1"), cost_check(plain[1], "0.0000001")]
    with dg.instance_for_test() as instance:
        result = dg.materialize([*plain, *checks], instance=instance, resources={"llm": LLMResource()},
                                raise_on_error=False)
    assert result.success  # a failed check flags the asset; it does not fail the run
    evaluations = check_results(result)
    by_asset = ledger_cost_by_asset(result.run_id)
    under, over = evaluations["plain_plan"], evaluations["plain_code"]
    assert under.passed and under.metadata["cost_usd"].value == float(by_asset["plain_plan"]) > 0
    assert by_asset["plain_code"] > Decimal("0.0000001")
    assert not over.passed and over.severity == dg.AssetCheckSeverity.ERROR
    assert f"${by_asset['plain_code']} over the $0.0000001" in over.description


def test_cost_check_rejects_a_threshold_that_is_not_money() -> None:
    with pytest.raises(ConfigError, match="max_usd must be a decimal USD amount like '0.50', got 'cheap'"):
        cost_check(research_agent.analysis_code, "cheap")
    with pytest.raises(ConfigError, match="max_cost_usd must be a decimal USD amount like '0.50', got 'cheap'"):
        llm_asset(max_cost_usd="cheap")


def test_run_cost_tags_equal_the_ledger_total() -> None:
    with dg.instance_for_test() as instance:
        result = run_research(instance, [])
        with shared_services(load_settings()) as services:
            tags = close_out_run(instance, services, result.run_id, "research_agent_job", "succeeded", None)
            with services.ledger.transaction() as session:
                total = run_total(session, result.run_id)
        stored = instance.get_run_by_id(result.run_id).tags
    assert Decimal(stored[RUN_COST_TAG]) == total > 0
    assert stored[RUN_CALLS_TAG] == "5" == tags[RUN_CALLS_TAG]


def test_daily_cost_report_tables_and_charts_the_day() -> None:
    with dg.instance_for_test() as instance:
        run = run_research(instance, [])
        today = dg.materialize([daily_cost_report], instance=instance, partition_key=TODAY.isoformat())
        yesterday = dg.materialize(
            [daily_cost_report], instance=instance, partition_key=(TODAY - timedelta(days=1)).isoformat()
        )
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as session:
        by_model = cost_rollup(session, "model", run_id=run.run_id)
        total = run_total(session, run.run_id)
    ledger.close()
    meta = today.get_asset_materialization_events()[0].materialization.metadata
    report = meta["report"].value
    for row in by_model:
        assert f"| research_agent_job | {row.key} | {row.calls} |" in report
        assert f"{row.cost_usd:.6f}" in report
    assert f"**{total:.6f}**" in report
    assert meta[TOTAL_KEY].value == float(total)
    png = meta["chart_path"].value
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(meta["chart"].value.split("base64,", 1)[1].rstrip(")")) == open(png, "rb").read()
    empty = yesterday.get_asset_materialization_events()[0].materialization.metadata
    assert "No billed LLM calls on this day." in empty["report"].value and empty[TOTAL_KEY].value == 0
