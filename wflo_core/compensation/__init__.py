"""Rollback by compensation: steps register undo actions; rollback runs them newest first, once each."""

from wflo_core.compensation.actions import Action, action_path, resolve_action
from wflo_core.compensation.book import CompensationBook, CompensationOutcome, RollbackReport, idempotency_key

__all__ = [
    "Action",
    "CompensationBook",
    "CompensationOutcome",
    "RollbackReport",
    "action_path",
    "idempotency_key",
    "resolve_action",
]
