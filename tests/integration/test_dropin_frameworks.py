"""Agent frameworks, unchanged, on wflo's drop-in clients inside a Dagster asset, ledger on Postgres.

One agent per framework (pydantic-ai, LangGraph with langchain-openai, the OpenAI Agents SDK) runs a
tool-using loop of several turns against the local OpenAI-compatible server, through the real SDK
over real HTTP. Each test shows: every request the server received is one ledger row priced from
the usage the server reported; a run budget stops the agent mid-loop before the breaching request
is sent, with the one-line BudgetExceeded in the Dagster event log; a repeated deterministic run is
served from the cache at $0 with its saving recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import select

from tests.llm_server_answers import UsageExtras, chat_answer, chat_json, responses_answer, responses_json
from wflo_core.config import load_settings
from wflo_core.ledger.models import Budget, BudgetHold, LLMCall
from wflo_core.ledger.store import Ledger
from wflo_core.pricing import PriceCatalog
from wflo_core.pricing.usage import usage_from_openai_chat, usage_from_openai_responses
from wflo_dagster.decorators import llm_asset
from wflo_dagster.resources.llm import LLMResource

pytestmark = pytest.mark.integration

TOOL_ROUNDS = 3
QUESTION = "How did LLM output prices change between 2023 and 2025?"
NOTES = {"prices": "2023: $60/M output; 2024: $15/M; 2025: $8-15/M"}


def search_notes(query: str) -> str:
    """Search the team's research notes."""
    return json.dumps({"query": query, "results": list(NOTES.values())})


def run_pydantic_ai(llm: LLMResource, context: dg.AssetExecutionContext, base_url: str,
                    temperature: float | None) -> str:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = llm.async_openai_client(context, base_url=base_url, api_key="sk-test")
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
    settings = {"temperature": temperature} if temperature is not None else None
    agent = Agent(model, instructions="Research with the search_notes tool, then answer.", model_settings=settings)
    agent.tool_plain(search_notes)
    return agent.run_sync(QUESTION).output


def run_langgraph(llm: LLMResource, context: dg.AssetExecutionContext, base_url: str,
                  temperature: float | None) -> str:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    client = llm.openai_client(context, base_url=base_url, api_key="sk-test")
    chat = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", temperature=temperature, max_retries=0,
                      root_client=client, client=client.chat.completions)
    graph = create_react_agent(chat, [tool(search_notes)])
    state = graph.invoke({"messages": [("user", QUESTION)]})
    return str(state["messages"][-1].content)


def run_openai_agents(llm: LLMResource, context: dg.AssetExecutionContext, base_url: str,
                      temperature: float | None) -> str:
    from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, Runner, function_tool

    client = llm.async_openai_client(context, base_url=base_url, api_key="sk-test")
    agent = Agent(name="researcher", instructions="Research with the search_notes tool, then answer.",
                  model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client),
                  tools=[function_tool(search_notes)], model_settings=ModelSettings(temperature=temperature))
    result = Runner.run_sync(agent, QUESTION, run_config=RunConfig(tracing_disabled=True))
    return str(result.final_output)


AGENTS: dict[str, Callable[..., str]] = {
    "pydantic_ai": run_pydantic_ai, "langgraph": run_langgraph, "openai_agents": run_openai_agents,
}


@pytest.fixture
def ledger(postgres_ledger: Ledger, fresh_postgres_url: str, llm_server, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("WFLO_DATABASE_URL", fresh_postgres_url)
    monkeypatch.setenv("WFLO_RETRY_BASE_DELAY_SECONDS", "0.01")
    llm_server.set_tool_rounds(TOOL_ROUNDS)
    return postgres_ledger


def _materialize(framework: str, base_url: str, budget_usd: str,
                 temperature: float | None) -> dg.ExecuteInProcessResult:
    @llm_asset(name=f"{framework}_answer")
    def agent_answer(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
        return AGENTS[framework](llm, context, base_url, temperature)

    return dg.materialize([agent_answer], resources={"llm": LLMResource(llm_mode="live")},
                          tags={"wflo/budget_usd": budget_usd}, raise_on_error=False)


def _calls(ledger: Ledger, run_id: str) -> list[LLMCall]:
    with ledger.transaction() as s:
        return list(s.scalars(select(LLMCall).where(LLMCall.run_id == run_id).order_by(LLMCall.id)))


def _holds(ledger: Ledger, run_id: str) -> list[BudgetHold]:
    with ledger.transaction() as s:
        run_budget = s.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == run_id))
        return list(s.scalars(select(BudgetHold).where(BudgetHold.budget_id == run_budget.id).order_by(BudgetHold.id)))


def _priced(request: dict[str, Any], catalog: PriceCatalog) -> Decimal:
    """What the server's own answer to ``request`` costs: the usage it reported, priced by the catalog."""
    body, extras = request["body"], UsageExtras(tool_rounds=TOOL_ROUNDS)
    if request["path"].endswith("/responses"):
        usage = usage_from_openai_responses(responses_json(responses_answer(body, extras)))
    else:
        usage = usage_from_openai_chat(chat_json(chat_answer(body, extras)))
    return catalog.cost("openai", body["model"], usage).total_usd


@pytest.mark.parametrize("framework", sorted(AGENTS))
def test_agent_loop_is_held_priced_recorded_stopped_and_cached(framework: str, ledger: Ledger, llm_server) -> None:
    catalog = PriceCatalog.from_settings(load_settings())

    # 1. A free run: every request the server received is one ledger row, priced from its usage.
    free = _materialize(framework, llm_server.openai_base_url, "100", temperature=None)
    assert free.success, free.all_events
    received = llm_server.requests()
    calls = _calls(ledger, free.run_id)
    assert len(received) == len(calls) == TOOL_ROUNDS + 1  # three tool turns, then the answer
    assert [c.status for c in calls] == ["settled"] * len(calls)
    assert [c.cost_usd for c in calls] == [_priced(r, catalog) for r in received]
    assert all(c.cost_usd > 0 for c in calls)
    assert all(h.status == "settled" for h in _holds(ledger, free.run_id))
    metadata = free.asset_materializations_for_node(f"{framework}_answer")[0].metadata
    assert metadata["wflo/llm_calls"].value == len(calls)

    # 2. A budget that covers the first two calls and not the third one's hold: the agent stops mid-loop.
    bounds = [h.amount_usd for h in _holds(ledger, free.run_id)]
    assert bounds == sorted(bounds)  # the conversation only grows, so each hold is at least the last one
    limit = calls[0].cost_usd + calls[1].cost_usd + bounds[2] - Decimal("0.000000001")
    llm_server.reset()
    llm_server.set_tool_rounds(TOOL_ROUNDS)
    stopped = _materialize(framework, llm_server.openai_base_url, str(limit), temperature=None)
    assert not stopped.success
    assert llm_server.request_count() == 2  # the third request was refused before it was sent
    failure = next(e for e in stopped.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "BudgetExceeded: run budget" in message and f"limit ${limit}" in message
    assert "\n" not in message.strip()
    stopped_calls = _calls(ledger, stopped.run_id)
    assert [c.status for c in stopped_calls] == ["settled", "settled"]
    with ledger.transaction() as s:
        budget = s.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == stopped.run_id))
        assert budget.spent_usd == sum(c.cost_usd for c in stopped_calls) <= limit
        assert budget.held_usd == 0

    # 3. temperature=0 twice: the second run is answered from the cache at $0, with what it saved.
    llm_server.reset()
    llm_server.set_tool_rounds(TOOL_ROUNDS)
    first = _materialize(framework, llm_server.openai_base_url, "100", temperature=0)
    sent = llm_server.request_count()
    again = _materialize(framework, llm_server.openai_base_url, "100", temperature=0)
    assert first.success and again.success
    assert llm_server.request_count() == sent == TOOL_ROUNDS + 1
    paid, hits = _calls(ledger, first.run_id), _calls(ledger, again.run_id)
    assert [c.status for c in hits] == ["cache_hit"] * len(paid)
    assert [c.cost_usd for c in hits] == [Decimal(0)] * len(paid)
    assert [c.saved_usd for c in hits] == [c.cost_usd for c in paid]
