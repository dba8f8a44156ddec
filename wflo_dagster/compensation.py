"""Compensations from Dagster steps, and rollback of failed runs that asked for it.

A step that makes an external side effect registers how to undo it right after
(:func:`register_compensation`). ``wflo runs rollback RUN_ID`` runs the undo actions newest first;
runs tagged ``wflo/rollback=on_failure`` are rolled back by :data:`rollback_failed_runs` when they fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from wflo_core.compensation import Action, CompensationBook
from wflo_core.config import load_settings
from wflo_core.ledger.store import Ledger
from wflo_dagster.hooks import LLM_RESOURCE_KEY
from wflo_dagster.resources.llm import LLMResource, StepContext, step_identity

ROLLBACK_TAG = "wflo/rollback"
"""Run tag; ``on_failure`` makes a failed run undo its side effects automatically."""


def register_compensation(
    context: StepContext, action: Action | str, payload: Mapping[str, Any] | None = None
) -> int:
    """Record how to undo a side effect this step just made; ``action(payload, idempotency_key)``."""
    llm: LLMResource = getattr(context.resources, LLM_RESOURCE_KEY)
    run_id, step_key, _ = step_identity(context)
    return CompensationBook(llm.services.ledger).register(
        run_id=run_id, workflow=context.job_name, step_key=step_key, action=action, payload=payload
    )


@dg.run_failure_sensor(
    name="wflo_rollback_failed_runs",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the compensations of failed runs tagged wflo/rollback=on_failure.",
)
def rollback_failed_runs(context: dg.RunFailureSensorContext) -> None:
    if context.dagster_run.tags.get(ROLLBACK_TAG) != "on_failure":
        return
    ledger = Ledger(load_settings().ledger_url)
    try:
        report = CompensationBook(ledger).rollback(context.dagster_run.run_id)
    finally:
        ledger.close()
    for outcome in report.failed:
        context.log.warning(
            f"compensation {outcome.seq} ({outcome.action}) of run {outcome.run_id} failed: {outcome.error}"
        )
