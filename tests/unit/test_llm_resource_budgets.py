"""Run budgets come from the run tag, the resource's config, the asset's declared run budget or the settings,
in that order."""

from __future__ import annotations

import dagster as dg
import pytest

from wflo_dagster import llm_asset
from wflo_dagster.pipelines import research_agent as ra
from wflo_dagster.pipelines.research_agent import research_plan
from wflo_dagster.resources.llm import LLMResource


def _materialize(llm: LLMResource, tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        return dg.materialize([research_plan], resources={"llm": llm}, instance=instance, tags=tags,
                              raise_on_error=False)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    return event.event_specific_data.error.message


def test_resource_config_sets_the_run_budget() -> None:
    result = _materialize(LLMResource(run_budget_usd="0.00001"))
    assert not result.success
    assert "BudgetExceeded: run budget" in _failure(result) and "limit $0.00001" in _failure(result)


def test_the_run_tag_wins_over_the_resource_config() -> None:
    result = _materialize(LLMResource(run_budget_usd="0.00001"), tags={"wflo/budget_usd": "1"})
    assert result.success


def test_the_assets_declared_run_budget_applies_when_no_tag_or_config_sets_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFLO_BUDGET_RUN_USD", "0.00002")
    result = _materialize(LLMResource())
    assert result.success, "research_plan declares run_budget_usd=0.50, which beats the settings' default"


def test_settings_apply_when_nothing_else_sets_a_run_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    @llm_asset(name="undeclared")
    def undeclared(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
        return research_plan_call(context, llm)

    monkeypatch.setenv("WFLO_BUDGET_RUN_USD", "0.00002")
    with dg.instance_for_test() as instance:
        result = dg.materialize([undeclared], resources={"llm": LLMResource()}, instance=instance,
                                raise_on_error=False)
    assert not result.success and "limit $0.00002" in _failure(result)


def research_plan_call(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
    provider, model = ra.PLANNER_MODEL
    return llm.complete(context, messages=ra.plan_messages(ra.QUESTION), provider=provider, model=model,
                        max_tokens=300, temperature=0.0).text


def test_a_malformed_budget_is_one_clear_line() -> None:
    result = _materialize(LLMResource(run_budget_usd="lots"))
    assert "must be a decimal USD amount like '0.50', got 'lots'" in _failure(result)
