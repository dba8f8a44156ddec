"""Recording a sandbox run: the ``sandbox_runs`` ledger row and its event, in one transaction."""

from __future__ import annotations

from typing import TypedDict

from wflo_core.events.outbox import EventRecorder
from wflo_core.events.schemas import SandboxFinished, SandboxKilled
from wflo_core.ledger.models import SandboxRun
from wflo_core.ledger.store import Ledger
from wflo_core.sandbox.result import Backend, SandboxResult


class _SandboxFields(TypedDict):
    """The fields ``SandboxFinished`` and ``SandboxKilled`` share."""

    run_id: str
    step_key: str
    backend: Backend
    exit_code: int | None
    wall_ms: int
    cpu_ms: int | None
    peak_memory_bytes: int | None
    stdout_truncated: bool
    stderr_truncated: bool


def record_sandbox_run(
    ledger: Ledger,
    result: SandboxResult,
    *,
    run_id: str,
    workflow: str,
    step_key: str,
    record_event: EventRecorder,
) -> int:
    """Write the run's ledger row and its ``sandbox.finished``/``sandbox.killed`` event; the row id."""
    common: _SandboxFields = {
        "run_id": run_id,
        "step_key": step_key,
        "backend": result.backend,
        "exit_code": result.exit_code,
        "wall_ms": result.wall_ms,
        "cpu_ms": result.cpu_ms,
        "peak_memory_bytes": result.peak_memory_bytes,
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
    }
    event = (
        SandboxKilled(**common, reason=result.killed_reason.value)
        if result.killed_reason
        else SandboxFinished(**common)
    )
    with ledger.transaction() as session:
        ledger.ensure_run(session, run_id, workflow)
        row = SandboxRun(run_id=run_id, step_key=step_key, **result.to_record())
        session.add(row)
        session.flush()
        record_event(session, event)
        return row.id
