"""Checkpoints from Dagster steps: save named state; a re-executed or continued run resumes from it.

A step that does several expensive things saves its progress with :func:`checkpoint`; when the run
fails and is re-executed from failure (Dagster UI, ``wflo runs resume``) or continued after an
approval, :func:`resume` returns the last state saved along the run chain. LLM answers need no
explicit checkpoint: ``LLMResource`` reuses the ones already paid for in the chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wflo_dagster.resources.llm import StepContext, services_of, step_identity, workflow_name


def checkpoint(context: StepContext, name: str, state: Mapping[str, Any]) -> int:
    """Save ``state`` (a JSON object) as the newest version of ``name`` in this run; returns the version."""
    run_id, step_key, _ = step_identity(context)
    return services_of(context).checkpoints.save(
        run_id=run_id, workflow=workflow_name(context), step_key=step_key, name=name, state=state
    )


def resume(context: StepContext, name: str) -> dict[str, Any] | None:
    """The last ``name`` saved by this run or the runs it continues, or None on a fresh start."""
    saved = services_of(context).checkpoints.load(context.run_id, name)
    if saved is not None and saved.run_id != context.run_id:
        context.log.info(f"resuming {name} from run {saved.run_id} (version {saved.version})")
    return saved.state if saved is not None else None
