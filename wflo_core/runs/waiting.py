"""The ledger status of a run stopped at an approval gate, and how the decision closes it.

A run that stops at a gate ends cleanly in Dagster, but in the ledger it stays ``waiting_approval``
(the run close-out leaves it alone) until the decision: approved hands the work to a continuation
run (the stopped run counts as succeeded), rejected or expired cancels it with the reason.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from wflo_core.events.outbox import EventRecorder
from wflo_core.events.schemas import RunCanceled, RunSucceeded
from wflo_core.ledger.models import Run
from wflo_core.ledger.rollups import run_total
from wflo_core.ledger.store import Ledger

WAITING_APPROVAL = "waiting_approval"


def is_waiting_for_approval(session: Session, run_id: str) -> bool:
    return session.scalar(select(Run.status).where(Run.id == run_id)) == WAITING_APPROVAL


def close_waiting_run(ledger: Ledger, session: Session, run_id: str, *, record_event: EventRecorder,
                      approved: bool, reason: str) -> bool:
    """Close ``run_id`` if it is waiting for approval; False if it is not (auto-approved, or closed)."""
    run = session.get(Run, run_id, populate_existing=True)
    if run is None or run.status != WAITING_APPROVAL:
        return False
    workflow = run.workflow.name
    if approved:
        ledger.finish_run(session, run_id, "succeeded", f"{reason}; continued in a new run")
        record_event(session, RunSucceeded(run_id=run_id, workflow=workflow, cost_usd=run_total(session, run_id)))
    else:
        ledger.finish_run(session, run_id, "canceled", reason)
        record_event(session, RunCanceled(run_id=run_id, workflow=workflow, reason=reason))
    return True
