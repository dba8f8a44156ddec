"""Pre-run job estimates: every planned call at the amount a reservation would hold for it."""

from __future__ import annotations

import json
from decimal import Decimal

import dagster as dg
from typer.testing import CliRunner

from wflo_core.budgets.estimate import PlannedCall, decode_plan, encode_plan, estimate
from wflo_core.config import load_settings
from wflo_core.ledger.rollups import cost_rollup, run_total
from wflo_core.pricing import PriceCatalog
from wflo_core.services import shared_services
from wflo_dagster.cli import app
from wflo_dagster.definitions import defs


def test_estimate_sums_reservation_amounts_per_step() -> None:
    catalog = PriceCatalog()
    plans = {"a": [PlannedCall("gpt-4o-mini", max_tokens=300, prompt_tokens=600, count=2)],
             "b": [PlannedCall("claude-3-5-haiku-latest", "anthropic", max_tokens=500, prompt_tokens=1500)]}
    rows = {r.step: r for r in estimate(plans, catalog)}
    assert rows["a"].calls == 2
    assert rows["a"].upper_bound_usd == 2 * catalog.upper_bound("openai", "gpt-4o-mini", 600, 300)
    assert rows["b"].upper_bound_usd == catalog.upper_bound("anthropic", "claude-3-5-haiku-latest", 1500, 500)
    assert decode_plan(encode_plan(plans["a"])) == plans["a"]


def test_wflo_estimate_bounds_the_demo_job_above_what_a_real_run_costs() -> None:
    result = CliRunner().invoke(app, ["estimate", "research_agent_job", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {s["step"] for s in report["steps"]} == {"research_plan", "source_notes", "analysis_code",
                                                    "analysis_result", "research_summary"}
    with dg.instance_for_test() as instance:
        run = defs.resolve_job_def("research_agent_job").execute_in_process(instance=instance)
    with shared_services(load_settings()) as services, services.ledger.transaction() as session:
        actual = run_total(session, run.run_id)
        by_step = {r.key: r.cost_usd for r in cost_rollup(session, "step", run_id=run.run_id)}
    assert actual > 0 and Decimal(report["upper_bound_usd"]) >= actual
    bounds = {s["step"]: Decimal(s["upper_bound_usd"]) for s in report["steps"]}
    assert all(by_step.get(step, Decimal(0)) <= bound for step, bound in bounds.items())


def test_a_job_with_llm_steps_that_plan_nothing_is_unbounded_not_free() -> None:
    result = CliRunner().invoke(app, ["estimate", "triage_agent_job", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    steps = {s["step"]: s["upper_bound_usd"] for s in report["steps"]}
    assert report["upper_bound_usd"] is None and steps["ticket_triage"] is None and steps["triage_digest"] is None
    table = CliRunner().invoke(app, ["estimate", "triage_agent_job"])
    assert "unbounded" in table.output
