"""Pre-run job estimates: every planned call at the amount a reservation would hold for it."""

from __future__ import annotations

import json
from decimal import Decimal

from typer.testing import CliRunner

from wflo_core.budgets.estimate import PlannedCall, decode_plan, encode_plan, estimate
from wflo_core.pricing import PriceCatalog
from wflo_dagster.cli import app


def test_estimate_sums_reservation_amounts_per_step() -> None:
    catalog = PriceCatalog()
    plans = {"a": [PlannedCall("gpt-4o-mini", max_tokens=300, prompt_tokens=600, count=2)],
             "b": [PlannedCall("claude-3-5-haiku-latest", "anthropic", max_tokens=500, prompt_tokens=1500)]}
    rows = {r.step: r for r in estimate(plans, catalog)}
    assert rows["a"].calls == 2
    assert rows["a"].upper_bound_usd == 2 * catalog.upper_bound("openai", "gpt-4o-mini", 600, 300)
    assert rows["b"].upper_bound_usd == catalog.upper_bound("anthropic", "claude-3-5-haiku-latest", 1500, 500)
    assert decode_plan(encode_plan(plans["a"])) == plans["a"]


def test_wflo_estimate_bounds_the_demo_job_above_what_it_actually_costs() -> None:
    result = CliRunner().invoke(app, ["estimate", "research_agent_job", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {s["step"] for s in report["steps"]} == {"research_plan", "source_notes", "analysis_code",
                                                    "research_summary"}
    actual_demo_cost = Decimal("0.00059535")  # the replayed run's ledger total (see the replay test)
    assert Decimal(report["upper_bound_usd"]) > actual_demo_cost
