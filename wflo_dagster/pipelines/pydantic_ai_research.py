"""Example: the research agent written with pydantic-ai, unchanged, on wflo's drop-in OpenAI client.

The agent is plain pydantic-ai: a model, instructions and a ``search_notes`` tool. The only wflo
line is where its OpenAI client comes from: ``llm.async_openai_client(context)``. Every request the
agent makes is then held against the run budget before it is sent, priced from its usage, cached,
retried and written to the ledger. Offline, the answers come from the shipped replay cassette
(``scripts/make_demo_cassette.py`` records them), so ``wflo demo --job pydantic_ai_research_job``
needs no key. Needs ``pip install 'wflo[agents]'``.
"""

from __future__ import annotations

import json

import dagster as dg

from wflo_core.budgets.estimate import PlannedCall
from wflo_core.errors import ConfigError
from wflo_dagster.decorators import llm_asset
from wflo_dagster.pipelines.research_agent import NOTES, QUESTION
from wflo_dagster.resources.llm import LLMResource

GROUP = "pydantic_ai_research"
MODEL = "gpt-4o-mini"
INSTRUCTIONS = "You are a careful researcher. Search the team's notes with search_notes, then answer in two sentences."
MAX_TOKENS = 400


def search_notes(query: str) -> str:
    """Search the team's research notes; returns matching snippets as JSON."""
    words = query.lower().split()
    return json.dumps({"results": [text for key, text in NOTES.items() if any(w in words for w in key.split())]})


def research_agent(client: object) -> object:
    """The pydantic-ai agent, on any ``openai.AsyncOpenAI`` (wflo's drop-in client here)."""
    try:
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider
    except ImportError as err:
        raise ConfigError("the pydantic-ai example needs pydantic-ai: pip install 'wflo[agents]'") from err
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))  # type: ignore[arg-type]
    agent = Agent(model, instructions=INSTRUCTIONS,
                  model_settings={"temperature": 0.0, "max_tokens": MAX_TOKENS})
    agent.tool_plain(search_notes)
    return agent


@llm_asset(group_name=GROUP, kinds={"openai", "pydanticai"},
           description="The question, answered by a pydantic-ai agent.",
           planned_calls=[PlannedCall(MODEL, "openai", max_tokens=MAX_TOKENS, prompt_tokens=3000, count=2)])
def pydantic_ai_answer(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    agent = research_agent(llm.async_openai_client(context))
    return agent.run_sync(QUESTION).output  # type: ignore[attr-defined]


pydantic_ai_assets = [pydantic_ai_answer]
pydantic_ai_research_job = dg.define_asset_job(
    "pydantic_ai_research_job", selection=dg.AssetSelection.groups(GROUP),
    tags={"wflo/budget_usd": "0.10", "wflo/tag/team": "research", "wflo/tag/agent": "pydantic_ai_research"},
)
