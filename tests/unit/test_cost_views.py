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


def test_cost_checks_pass_under_and_fail_over_their_threshold() -> None:
    checks = [
        cost_check(research_agent.analysis_code, "0.0001"),
        cost_check(research_agent.research_plan, "1"),
    ]
    with dg.instance_for_test() as instance:
        result = run_research(instance, checks)
    assert result.success  # a failed check flags the asset; it does not fail the run
    evaluations = check_results(result)
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as session:
        by_asset = {r.key: r.cost_usd for r in cost_rollup(session, "asset", run_id=result.run_id)}
    ledger.close()
    over, under = evaluations["analysis_code"], evaluations["research_plan"]
    assert by_asset["analysis_code"] > Decimal("0.0001")
    assert not over.passed and over.severity == dg.AssetCheckSeverity.ERROR
    assert over.metadata["cost_usd"].value == float(by_asset["analysis_code"])
    assert f"${by_asset['analysis_code']} over the $0.0001" in over.description
    assert under.passed and under.metadata["cost_usd"].value == float(by_asset["research_plan"])


def test_cost_check_rejects_a_threshold_that_is_not_money() -> None:
    with pytest.raises(ConfigError, match="max_usd must be a decimal USD amount like '0.50', got 'cheap'"):
        cost_check(research_agent.analysis_code, "cheap")


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
