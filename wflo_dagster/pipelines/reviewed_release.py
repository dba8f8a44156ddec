"""Example: a reviewed release. plan → code (checkpointed) → human review gate → publish (undoable).

Shows the durable-workflow features offline, on the research agent's replay cassette (the same
prompts, so no new recordings): the agent's code is checkpointed; publishing waits at an approval
gate (``wflo approvals approve ID --by ... --reason ...``; the ``wflo_approvals`` sensor launches the
continuation); the published file registers a compensation, so ``wflo runs rollback RUN_ID``
removes it again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from wflo_core.config import load_settings
from wflo_core.keys import policy_tags
from wflo_dagster.checkpoints import checkpoint, resume
from wflo_dagster.compensation import register_compensation
from wflo_dagster.decorators import llm_asset
from wflo_dagster.gates import approval_gate
from wflo_dagster.pipelines.research_agent import (
    CODER_MODEL,
    PLANNER_MODEL,
    QUESTION,
    code_messages,
    plan_messages,
)
from wflo_dagster.resources.llm import LLMResource

GROUP = "reviewed_release"
POLICY = policy_tags(run_budget_usd="0.50", team="research", agent="release_agent")
"""Run budget and attribution, on the assets themselves so they hold however a run is launched."""


@llm_asset(group_name=GROUP, op_tags=POLICY, kinds={"openai"}, description="The agent's plan.")
def release_plan(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    provider, model = PLANNER_MODEL
    return llm.complete(
        context,
        messages=plan_messages(QUESTION),
        provider=provider,
        model=model,
        max_tokens=300,
        temperature=0.0,
    ).text


@llm_asset(
    group_name=GROUP,
    op_tags=POLICY,
    kinds={"anthropic"},
    description="Code the agent wrote; checkpointed once written.",
)
def release_code(context: dg.AssetExecutionContext, release_plan: str, llm: LLMResource) -> str:
    saved = resume(context, "release_code")
    if saved is not None:
        return str(saved["code"])
    provider, model = CODER_MODEL
    code = llm.complete(
        context,
        messages=code_messages(release_plan),
        provider=provider,
        model=model,
        max_tokens=500,
        temperature=0.0,
    ).text
    checkpoint(context, "release_code", {"code": code})
    return code


def review_context(release_code: str) -> dict[str, Any]:
    return {"code": release_code, "projected_cost_usd": "0", "publishes_to": str(published_dir())}


release_review = approval_gate(
    "release_review",
    upstream=["release_code"],
    group_name=GROUP,
    review_context=review_context,
    reason="publish the agent's analysis code",
    timeout=timedelta(hours=24),
    on_timeout="reject",
    description="A human reviews the code before it is published.",
)


def published_dir() -> Path:
    return load_settings().home / "published"


def unpublish(payload: dict[str, Any], idempotency_key: str) -> None:
    """Compensation of ``published_release``: remove the published file (idempotent)."""
    Path(payload["path"]).unlink(missing_ok=True)


@llm_asset(
    group_name=GROUP, op_tags=POLICY, deps=[release_review], description="The reviewed code, published (undoable)."
)
def published_release(context: dg.AssetExecutionContext, release_code: str, llm: LLMResource) -> str:
    target = published_dir() / f"{context.run_id}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(release_code)
    register_compensation(context, unpublish, {"path": str(target)})
    return str(target)


reviewed_release_assets = [release_plan, release_code, release_review, published_release]
reviewed_release_job = dg.define_asset_job(
    "reviewed_release_job",
    selection=dg.AssetSelection.groups(GROUP),
    tags=POLICY,
)
