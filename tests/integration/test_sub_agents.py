"""Nested agents: a sub-agent's calls inside a step roll up to that step and run, and stay attributable."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import select

from wflo_core.config import load_settings
from wflo_core.ledger.models import LLMCall
from wflo_core.ledger.rollups import cost_rollup, run_total
from wflo_core.ledger.store import Ledger
from wflo_dagster.decorators import llm_asset
from wflo_dagster.resources.llm import LLMResource

pytestmark = pytest.mark.integration


@llm_asset()
def planner(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    plan = llm.complete(context, prompt="Plan the work.", max_tokens=50, temperature=0.7).text
    with llm.sub_agent(context, "researcher"):
        for topic in ("prices", "latency"):
            llm.complete(context, prompt=f"Research {topic}.", max_tokens=50, temperature=0.7)
    return plan


def test_sub_agent_calls_roll_up_to_the_step_and_run(llm_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFLO_LLM_MODE", "live")
    monkeypatch.setenv("WFLO_OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("WFLO_OPENAI_BASE_URL", llm_server.openai_base_url)
    with dg.instance_for_test() as instance:
        result = dg.materialize([planner], resources={"llm": LLMResource()}, instance=instance)
    assert result.success
    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as s:
        calls = list(s.scalars(select(LLMCall).order_by(LLMCall.id)))
        by_step = cost_rollup(s, "step", run_id=result.run_id)
        by_tag = {r.key: r for r in cost_rollup(s, "tag", run_id=result.run_id)}
        total = run_total(s, result.run_id)
    ledger.close()
    parent, *subs = calls
    assert [c.step_key for c in calls] == ["planner"] * 3
    assert parent.parent_call_id is None and "agent" not in parent.tags
    assert [(c.parent_call_id, c.tags["agent"]) for c in subs] == [(parent.id, "researcher")] * 2
    assert [(r.key, r.calls, r.cost_usd) for r in by_step] == [("planner", 3, total)]
    assert by_tag["agent=researcher"].calls == 2
    assert by_tag["agent=researcher"].cost_usd == subs[0].cost_usd + subs[1].cost_usd
    metadata = result.asset_materializations_for_node("planner")[0].metadata
    assert metadata["wflo/llm_calls"].value == 3
