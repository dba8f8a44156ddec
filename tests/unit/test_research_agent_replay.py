"""The demo pipeline runs offline on the embedded default and costs exactly what its cassette says."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import select

from wflo_core.config import load_settings
from wflo_core.ledger.models import LLMCall, OutboxEvent, SandboxRun, Step
from wflo_core.ledger.rollups import run_total
from wflo_core.ledger.store import Ledger
from wflo_core.llm.providers.cassette import default_cassette_path
from wflo_core.pricing import PriceCatalog, Usage
from wflo_dagster.definitions import defs

pytestmark = pytest.mark.usefixtures("bubblewrap")  # the research agent runs its code in the sandbox


def _cassette_prices() -> dict[tuple[str, int, int], Decimal]:
    """(model, input tokens, output tokens) of every recorded answer → its price in the catalog."""
    catalog = PriceCatalog()
    prices = {}
    for line in default_cassette_path().read_text().splitlines():
        entry = json.loads(line)
        usage = Usage(**entry["response"]["usage"])
        key = (entry["model"], usage.input_tokens, usage.output_tokens)
        prices[key] = catalog.cost(entry["response"]["provider"], entry["model"], usage).total_usd
    return prices


def test_demo_job_replays_offline_and_its_cost_matches_the_cassette_priced_by_the_catalog() -> None:
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("research_agent_job").execute_in_process(instance=instance)
    assert result.success
    prices = _cassette_prices()
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as s:
        calls = list(s.scalars(select(LLMCall)))
        expected = [prices[(c.model, c.input_tokens, c.output_tokens)] for c in calls]
        assert [c.cost_usd for c in calls] == expected
        assert run_total(s, result.run_id) == sum(expected) > 0
        assert {st.step_key: st.status for st in s.scalars(select(Step))} == {
            "research_plan": "succeeded", "source_notes": "succeeded", "analysis_code": "succeeded",
            "analysis_result": "succeeded", "research_summary": "succeeded"}
        (sandboxed,) = s.scalars(select(SandboxRun))
        event_types = list(s.scalars(select(OutboxEvent.event_type).order_by(OutboxEvent.id)))
    ledger.close()
    assert len(calls) == 5 and all(c.price_version.startswith("genai-prices") for c in calls)
    assert event_types[0] == "io.wflo.run.started"
    assert event_types.count("io.wflo.llm_call.settled") == 5
    summary = result.asset_materializations_for_node("research_summary")[0].metadata
    assert summary["wflo/llm_calls"].value == 1 and summary["wflo/cost_usd"].value > 0
    # The agent's code ran in the (process) sandbox: recorded, evented, shown as metadata.
    ran = result.asset_materializations_for_node("analysis_result")[0].metadata
    assert result.output_for_node("analysis_result") == '{"2024_vs_2023": 0.25, "2025_vs_2023": 0.1667}'
    assert (sandboxed.backend, sandboxed.exit_code, sandboxed.killed_reason) == ("process", 0, None)
    assert sandboxed.step_key == "analysis_result" and "2024_vs_2023" in sandboxed.stdout_excerpt
    assert "io.wflo.sandbox.finished" in event_types
    assert ran["wflo/sandbox_exit_code"].value == 0 and "2024_vs_2023" in ran["wflo/sandbox_stdout"].value


def test_definitions_validate_with_the_dagster_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m",
                           "wflo_dagster.definitions"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
