"""The step hook: close the step's ledger row and emit its event, on success or failure.

Hooks run in the step's process after its events, with the same ``LLMResource`` instance the step
used, so they see the step's totals. They never fire for crashed or terminated steps; the
run-status sensor in ``sensors/run_status.py`` closes those out.
"""

from __future__ import annotations

import dagster as dg

from wflo_core.steps.recorder import close_step
from wflo_core.steps.totals import StepTotals
from wflo_dagster.resources.llm import LLM_RESOURCE_KEY, LLMResource


def _close_step(context: dg.HookContext, status: str, error: str | None) -> None:
    llm: LLMResource = getattr(context.resources, LLM_RESOURCE_KEY)
    recorder = llm._finished_step(context.run_id, context.step_key)
    if recorder is not None:
        recorder.close(status, error)
    else:  # a step that made no call and opened no row (not built with llm_asset)
        services = llm._wflo_services
        close_step(services.ledger, services.record_event, context.run_id, context.step_key, context.job_name,
                   status, error, StepTotals())


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
