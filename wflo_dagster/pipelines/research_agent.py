"""Example: a research agent. plan → (gather notes with a search tool ‖ write analysis code) → summary.

Runs offline on the shipped replay cassette: every LLM call is priced from the cassette's recorded
usage, held against the run budget before it is "sent", and written to the ledger. The prompt
builders are plain functions so the cassette can be regenerated from them
(``scripts/make_demo_cassette.py``).
"""

from __future__ import annotations

import json

import dagster as dg

from wflo_core.budgets.estimate import PlannedCall
from wflo_core.calls import Message, ToolCall
from wflo_core.keys import policy_tags
from wflo_dagster.decorators import llm_asset
from wflo_dagster.resources.llm import LLMResource
from wflo_dagster.resources.sandbox import SandboxResource
from wflo_dagster.sandbox_step import run_code_step

GROUP = "research_agent"
POLICY = policy_tags(run_budget_usd="0.50", team="research", agent="research_agent")
"""Run budget and attribution, on the assets themselves so they hold however a run is launched."""
PLANNER_MODEL = ("openai", "gpt-4o-mini")
CODER_MODEL = ("anthropic", "claude-3-5-haiku-latest")
QUESTION = "How did median LLM API prices per million output tokens change between 2023 and 2025?"

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_notes",
        "description": "Search the team's research notes; returns matching snippets.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
NOTES = {
    "llm prices": "2023: GPT-4 $60/M output. 2024: GPT-4o $15/M, GPT-4o-mini $0.60/M. "
    "2025: many frontier models $8-15/M, small models under $1/M.",
}


class ResearchConfig(dg.Config):
    question: str = QUESTION


def plan_messages(question: str) -> list[Message]:
    return [
        Message("system", "You are a careful research planner. Answer with a numbered plan."),
        Message("user", f"Plan three short research steps for: {question}"),
    ]


def notes_messages(plan: str) -> list[Message]:
    return [
        Message("system", "You gather evidence. Use the search_notes tool, then write concise notes."),
        Message("user", f"Research plan:\n{plan}\nGather the evidence."),
    ]


def notes_followup(plan: str, call: ToolCall, result: str) -> list[Message]:
    return [
        *notes_messages(plan),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", result, tool_call_id=call.id),
    ]


def code_messages(plan: str) -> list[Message]:
    return [
        Message("system", "You write small, dependency-free Python 3 programs. Reply with code only."),
        Message(
            "user",
            "Write a program that prints, as JSON, the ratio between these output prices "
            "per million tokens: 2023=60.0, 2024=15.0, 2025=10.0 (keys 2024_vs_2023 and "
            f"2025_vs_2023). Context:\n{plan}",
        ),
    ]


def summary_messages(question: str, notes: str, code: str, result: str) -> list[Message]:
    return [
        Message("system", "You write crisp executive summaries."),
        Message(
            "user",
            f"Question: {question}\nNotes:\n{notes}\nAnalysis code:\n{code}\n"
            f"Its output:\n{result}\nSummarize the answer in three sentences.",
        ),
    ]


def run_search_tool(call: ToolCall) -> str:
    query = json.loads(call.arguments or "{}").get("query", "").lower()
    hits = [text for key, text in NOTES.items() if any(word in query for word in key.split())]
    return json.dumps({"results": hits})


@llm_asset(
    group_name=GROUP,
    op_tags=POLICY,
    kinds={"openai"},
    description="A short research plan for the question.",
    max_cost_usd="0.001",
    planned_calls=[PlannedCall(PLANNER_MODEL[1], PLANNER_MODEL[0], max_tokens=300, prompt_tokens=600)],
)
def research_plan(context: dg.AssetExecutionContext, config: ResearchConfig, llm: LLMResource) -> str:
    provider, model = PLANNER_MODEL
    return llm.complete(
        context,
        messages=plan_messages(config.question),
        provider=provider,
        model=model,
        max_tokens=300,
        temperature=0.0,
    ).text


@llm_asset(
    group_name=GROUP,
    op_tags=POLICY,
    kinds={"openai"},
    description="Evidence gathered with a search tool.",
    max_cost_usd="0.001",
    planned_calls=[PlannedCall(PLANNER_MODEL[1], PLANNER_MODEL[0], max_tokens=400, prompt_tokens=2500, count=2)],
)
def source_notes(context: dg.AssetExecutionContext, research_plan: str, llm: LLMResource) -> str:
    provider, model = PLANNER_MODEL
    params = {"provider": provider, "model": model, "max_tokens": 400, "temperature": 0.0, "tools": (SEARCH_TOOL,)}
    first = llm.complete(context, messages=notes_messages(research_plan), **params)
    if not first.tool_calls:
        return first.text
    call = first.tool_calls[0]
    return llm.complete(context, messages=notes_followup(research_plan, call, run_search_tool(call)), **params).text


@llm_asset(
    group_name=GROUP,
    op_tags=POLICY,
    kinds={"anthropic"},
    description="Python the agent wrote for the analysis.",
    max_cost_usd="0.002",
    planned_calls=[PlannedCall(CODER_MODEL[1], CODER_MODEL[0], max_tokens=500, prompt_tokens=1500)],
)
def analysis_code(context: dg.AssetExecutionContext, research_plan: str, llm: LLMResource) -> str:
    provider, model = CODER_MODEL
    return llm.complete(
        context, messages=code_messages(research_plan), provider=provider, model=model, max_tokens=500, temperature=0.0
    ).text


@llm_asset(group_name=GROUP, op_tags=POLICY, kinds={"python"}, description="The agent's code, run in the sandbox.",
           planned_calls=[])
def analysis_result(context: dg.AssetExecutionContext, analysis_code: str, sandbox: SandboxResource) -> str:
    result = run_code_step(context, sandbox, analysis_code, timeout=30)
    if not result.ok:
        raise dg.Failure(
            description=f"the agent's code failed in the sandbox (exit {result.exit_code}, "
            f"killed: {result.killed_reason}); stderr: {result.stderr_text[-500:]}"
        )
    return result.stdout_text.strip()


@llm_asset(
    group_name=GROUP,
    op_tags=POLICY,
    kinds={"openai"},
    description="The answer, for humans.",
    max_cost_usd="0.001",
    planned_calls=[PlannedCall(PLANNER_MODEL[1], PLANNER_MODEL[0], max_tokens=300, prompt_tokens=3000)],
)
def research_summary(
    context: dg.AssetExecutionContext,
    config: ResearchConfig,
    source_notes: str,
    analysis_code: str,
    analysis_result: str,
    llm: LLMResource,
) -> str:
    provider, model = PLANNER_MODEL
    messages = summary_messages(config.question, source_notes, analysis_code, analysis_result)
    return llm.complete(
        context, messages=messages, provider=provider, model=model, max_tokens=300, temperature=0.0
    ).text


research_assets = [research_plan, source_notes, analysis_code, analysis_result, research_summary]
research_agent_job = dg.define_asset_job(
    "research_agent_job",
    selection=dg.AssetSelection.groups(GROUP),
    tags=POLICY,
)
