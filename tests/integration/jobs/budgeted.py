"""Jobs the Dagster integration tests run in real step processes (importable, so reconstructable)."""

from __future__ import annotations

import os
import signal

import dagster as dg

from wflo_dagster.decorators import llm_asset
from wflo_dagster.resources.llm import LLMResource

KILL_FLAG = "WFLO_TEST_KILL_AFTER_FIRST_CALL"


@llm_asset(description="Fits the budget.")
def cheap_step(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    return llm.complete(context, prompt="Say hi.", max_tokens=100, temperature=0.7).text


@llm_asset(description="Asks for so many output tokens that its worst case cannot fit the budget.")
def costly_step(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    return llm.complete(context, prompt="Write a novel.", max_tokens=20_000, temperature=0.7).text


@llm_asset(budget_usd="0.00001", deps=[cheap_step], description="Runs after cheap_step, over its own budget.")
def capped_step(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    return llm.complete(context, prompt="Say hi again.", max_tokens=100, temperature=0.7).text


@llm_asset(retry_policy=dg.RetryPolicy(max_retries=1))
def flaky_step(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    text = llm.complete(context, prompt=f"Attempt {context.retry_number}.", max_tokens=50, temperature=0.7).text
    if context.retry_number == 0:
        raise RuntimeError("transient failure after the LLM call settled")
    return text


@llm_asset()
def killed_step(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    llm.complete(context, prompt="First call.", max_tokens=50, temperature=0.7)
    if os.environ.get(KILL_FLAG):
        os.kill(os.getpid(), signal.SIGKILL)  # the step process dies: no hook will run
    return llm.complete(context, prompt="Second call.", max_tokens=50, temperature=0.7).text


defs = dg.Definitions(
    assets=[cheap_step, costly_step, capped_step, flaky_step, killed_step],
    jobs=[
        dg.define_asset_job("budget_job", selection=["cheap_step", "costly_step"],
                            tags={"wflo/budget_usd": "0.002"}),
        dg.define_asset_job("chain_job", selection=["cheap_step", "capped_step"]),
        dg.define_asset_job("flaky_job", selection=["flaky_step"]),
        dg.define_asset_job("killed_job", selection=["killed_step"]),
    ],
    resources={"llm": LLMResource()},
)


def budget_job() -> dg.JobDefinition:
    return defs.resolve_job_def("budget_job")


def chain_job() -> dg.JobDefinition:
    return defs.resolve_job_def("chain_job")


def flaky_job() -> dg.JobDefinition:
    return defs.resolve_job_def("flaky_job")


def killed_job() -> dg.JobDefinition:
    return defs.resolve_job_def("killed_job")
