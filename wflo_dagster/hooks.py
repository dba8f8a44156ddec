"""The step hook: close the step's ledger row and emit its event, on success or failure.

Hooks run in the step's process after its events, with the same ``LLMResource`` instance the step
used, so they see the step's totals. They never fire for crashed or terminated steps; the
run-status sensor in ``sensors/run_status.py`` closes those out.
"""

from __future__ import annotations

import dagster as dg

from wflo_core.events.schemas import StepFailed, StepSucceeded
from wflo_dagster.resources.llm import LLMResource

LLM_RESOURCE_KEY = "llm"


def _close_step(context: dg.HookContext, status: str, error: str | None) -> None:
    llm: LLMResource = getattr(context.resources, LLM_RESOURCE_KEY)
    services = llm.services
    totals = llm.step_totals(context.run_id, context.step_key)
    with services.ledger.transaction() as session:
        closed = services.ledger.finish_latest_attempt(session, context.run_id, context.step_key, status, error)
        if closed is None:  # a step that never opened its row (not built with llm_asset)
            services.ledger.ensure_run(session, context.run_id, context.job_name)
            services.ledger.open_step(session, context.run_id, context.step_key)
            closed = services.ledger.finish_latest_attempt(session, context.run_id, context.step_key, status,
                                                           error)
        attempt, asset_key = closed  # type: ignore[misc]
        common = {"run_id": context.run_id, "step_key": context.step_key, "attempt": attempt,
                  "asset_key": asset_key, "cost_usd": totals.cost_usd}
        if status == "succeeded":
            event = StepSucceeded(**common, llm_calls=totals.calls, cache_hits=totals.cache_hits,
                                  saved_usd=totals.saved_usd)
        else:
            event = StepFailed(**common, error=error or "step failed")
        services.emit(session, event)


def _on_step_end(context: dg.HookContext, event_list: list[dg.DagsterEvent]) -> dg.HookExecutionResult:
    """Close the step on its final success or failure (a failure Dagster will retry is not final)."""
    for event in event_list:
        if event.is_step_success:
            _close_step(context, "succeeded", None)
            return dg.HookExecutionResult(hook_name=WFLO_HOOK_NAME, is_skipped=False)
        if event.is_step_failure:
            err = context.op_exception
            _close_step(context, "failed", f"{type(err).__name__}: {err}"[:2000] if err else None)
            return dg.HookExecutionResult(hook_name=WFLO_HOOK_NAME, is_skipped=False)
    return dg.HookExecutionResult(hook_name=WFLO_HOOK_NAME, is_skipped=True)


WFLO_HOOK_NAME = "wflo_close_step"
# One hook for both outcomes rather than a success_hook + failure_hook pair: Dagster then writes one
# hook event per step instead of a completed and a skipped one.
wflo_step_hook = dg.HookDefinition(name=WFLO_HOOK_NAME, hook_fn=_on_step_end,
                                   required_resource_keys={LLM_RESOURCE_KEY})
WFLO_HOOKS = {wflo_step_hook}
