"""Closing a run out in the ledger: final status, crashed steps, released holds, the run event."""

from __future__ import annotations

from sqlalchemy import select

from wflo_core.budgets import BudgetBook
from wflo_core.events.outbox import DEFAULT_RECORDER, EventRecorder
from wflo_core.events.schemas import RunCanceled, RunFailed, RunSucceeded
from wflo_core.ledger.models import Step, utcnow
from wflo_core.ledger.rollups import run_total
from wflo_core.ledger.store import Ledger
from wflo_core.runs.waiting import is_waiting_for_approval


def close_run(ledger: Ledger, budgets: BudgetBook, run_id: str, workflow: str, status: str,
              reason: str | None = None, *, record_event: EventRecorder = DEFAULT_RECORDER) -> bool:
    """Record the run's end once (first writer wins); steps still open are marked crashed.

    Called by the run-status sensor (backstop for crashed/terminated runs, where hooks never fire)
    and by ``wflo demo``. Returns False when the run was already closed.
    """
    with ledger.transaction() as session:
        ledger.ensure_run(session, run_id, workflow)
        if is_waiting_for_approval(session, run_id):
            return False  # stopped at an approval gate: the decision closes it (wflo_core.approvals)
        if not ledger.finish_run(session, run_id, status, reason):
            return False
        for step in session.scalars(select(Step).where(Step.run_id == run_id, Step.status == "running")):
            step.status = "crashed"
            step.error = reason or f"run ended {status} before the step finished"
            step.ended_at = utcnow()
        budgets.close_run_holds(session, run_id)
        cost = run_total(session, run_id)
        if status == "succeeded":
            record_event(session, RunSucceeded(run_id=run_id, workflow=workflow, cost_usd=cost))
        elif status == "canceled":
            record_event(session, RunCanceled(run_id=run_id, workflow=workflow, reason=reason))
        else:
            record_event(session, RunFailed(run_id=run_id, workflow=workflow, error=reason or "run failed",
                                    cost_usd=cost))
        return True
