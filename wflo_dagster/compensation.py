"""Compensations from Dagster steps: a step that makes an external side effect registers its undo.

``wflo runs rollback RUN_ID`` runs the undo actions newest first; runs tagged
``wflo/rollback=on_failure`` are rolled back by the ``wflo_rollback_failed_runs`` sensor
(``sensors/rollback.py``) when they fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wflo_core.compensation import Action
from wflo_dagster.resources.llm import StepContext, services_of, step_identity, workflow_name


def register_compensation(
    context: StepContext, action: Action | str, payload: Mapping[str, Any] | None = None
) -> int:
    """Record how to undo a side effect this step just made; ``action(payload, idempotency_key)``."""
    run_id, step_key, _ = step_identity(context)
    return services_of(context).compensations.register(
        run_id=run_id, workflow=workflow_name(context), step_key=step_key, action=action, payload=payload
    )
