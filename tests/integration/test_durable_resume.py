"""A run that fails in step 3 of 4 resumes from its checkpoint: steps 1-2 are not re-run and no LLM call
is paid twice (the ledger proves it). Resumed with the real ``wflo runs resume`` command."""

from __future__ import annotations

import os
from collections import Counter
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from tests.integration.durable_support import cli, durable_env, paid_calls, steps_of
from wflo_core.budgets import BudgetBook
from wflo_dagster.checkpoints import checkpoint, resume
from wflo_dagster.decorators import llm_asset
from wflo_dagster.pipelines import research_agent as ra
from wflo_dagster.resources.llm import LLMResource

pytestmark = pytest.mark.integration

FAIL_FLAG = "DURABLE_TEST_FAIL_FLAG"
TOOL_LOG = "DURABLE_TEST_TOOL_LOG"
CODE_OUTPUT = '{"2024_vs_2023": 0.25, "2025_vs_2023": 0.1667}'  # what step 2's recorded code prints
PLANNER = {"provider": ra.PLANNER_MODEL[0], "model": ra.PLANNER_MODEL[1], "temperature": 0.0}


@llm_asset()
def step1_plan(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    return llm.complete(context, messages=ra.plan_messages(ra.QUESTION), max_tokens=300, **PLANNER).text


@llm_asset()
def step2_code(context: dg.AssetExecutionContext, step1_plan: str, llm: LLMResource) -> str:
    provider, model = ra.CODER_MODEL
    return llm.complete(
        context,
        messages=ra.code_messages(step1_plan),
        provider=provider,
        model=model,
        max_tokens=500,
        temperature=0.0,
    ).text


@llm_asset()
def step3_notes(context: dg.AssetExecutionContext, step1_plan: str, step2_code: str, llm: LLMResource) -> str:
    params = {**PLANNER, "max_tokens": 400, "tools": (ra.SEARCH_TOOL,)}
    first = llm.complete(context, messages=ra.notes_messages(step1_plan), **params)
    call = first.tool_calls[0]
    saved = resume(context, "search")
    if saved is None:
        with open(os.environ[TOOL_LOG], "a") as log:
            log.write("search\n")
        saved = {"result": ra.run_search_tool(call)}
        checkpoint(context, "search", saved)
    flag = Path(os.environ[FAIL_FLAG])
    if flag.exists():
        flag.unlink()
        raise RuntimeError("step 3 crashed after its first LLM call and the tool run")
    return llm.complete(context, messages=ra.notes_followup(step1_plan, call, saved["result"]), **params).text


@llm_asset()
def step4_summary(
    context: dg.AssetExecutionContext, step3_notes: str, step2_code: str, llm: LLMResource
) -> str:
    return llm.complete(
        context, messages=ra.summary_messages(ra.QUESTION, step3_notes, step2_code, CODE_OUTPUT), max_tokens=300,
        **PLANNER
    ).text


four_steps = dg.define_asset_job(
    "four_steps",
    selection=[step1_plan, step2_code, step3_notes, step4_summary],
    executor_def=dg.in_process_executor,
)
resume_defs = dg.Definitions(
    assets=[step1_plan, step2_code, step3_notes, step4_summary],
    jobs=[four_steps],
    resources={"llm": LLMResource()},
)


def test_failed_run_resumes_from_its_checkpoint_without_paying_twice(
    fresh_postgres_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flag, tool_log = tmp_path / "fail-once", tmp_path / "tools.log"
    flag.touch()
    monkeypatch.setenv(FAIL_FLAG, str(flag))
    monkeypatch.setenv(TOOL_LOG, str(tool_log))
    monkeypatch.setenv("WFLO_CACHE_MODE", "never")  # prove reuse comes from the checkpoint, not the cache
    with durable_env(fresh_postgres_url, postgres_url, monkeypatch) as (instance, ledger):
        failed = resume_defs.get_job_def("four_steps").execute_in_process(
            instance=instance, raise_on_error=False, tags={"wflo/budget_usd": "0.05"}
        )
        assert not failed.success
        assert steps_of(ledger, failed.run_id) == {
            "step1_plan": "succeeded",
            "step2_code": "succeeded",
            "step3_notes": "failed",
        }
        assert Counter(step for _, step in paid_calls(ledger)) == {
            "step1_plan": 1,
            "step2_code": 1,
            "step3_notes": 1,
        }

        output = cli("runs", "resume", failed.run_id, "--module", __name__, "--attribute", "resume_defs")
        resumed_id = output.strip().splitlines()[-1].split()[1]
        assert output.strip().endswith("succeeded")
        assert instance.get_run_by_id(resumed_id).parent_run_id == failed.run_id
        assert set(steps_of(ledger, resumed_id)) == {"step3_notes", "step4_summary"}, "steps 1-2 not re-run"
        paid = paid_calls(ledger)
        assert Counter(step for _, step in paid) == {
            "step1_plan": 1,
            "step2_code": 1,
            "step3_notes": 2,
            "step4_summary": 1,
        }, "no call paid twice"
        assert [run for run, step in paid if step == "step3_notes"] == [failed.run_id, resumed_id], (
            "step 3's first call was reused from the failed run; only its second call was paid in the resume"
        )
        assert tool_log.read_text() == "search\n", "the checkpointed tool result was not recomputed"
        with ledger.transaction() as s:
            runs = {u.scope_key: u for u in BudgetBook(ledger).usage(s) if u.scope == "run"}
        parent_spent = runs[failed.run_id].spent_usd
        assert parent_spent > 0
        assert runs[resumed_id].limit_usd == Decimal("0.05") - parent_spent, (
            "the resumed run is held against what is left of its parent's budget, not a fresh $0.05")
