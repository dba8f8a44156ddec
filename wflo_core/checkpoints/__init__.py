"""Checkpoints: named step state saved in the ledger, and settled LLM answers reused on re-execution."""

from wflo_core.checkpoints.settled_results import SettledResults
from wflo_core.checkpoints.store import CheckpointStore, SavedState

__all__ = ["CheckpointStore", "SavedState", "SettledResults"]
