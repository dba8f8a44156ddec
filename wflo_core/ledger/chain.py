"""Runs that continue one another: a resumed or approved run points at the run it continues.

``runs.parent_run_id`` links a continuation (after an approval) or a re-execution (after a
failure) to the run it carries on. Checkpoints are read along this chain, approvals of a gate are
found on it, and rollback undoes the whole family.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from wflo_core.ledger.models import Run

MAX_CHAIN = 1000
"""Guards against a cycle written by hand into ``parent_run_id``."""


def run_chain(session: Session, run_id: str) -> list[str]:
    """``run_id`` first, then its parent, grandparent... up to the run that started it all."""
    chain = [run_id]
    parent = session.scalar(select(Run.parent_run_id).where(Run.id == run_id))
    while parent and parent not in chain and len(chain) < MAX_CHAIN:
        chain.append(parent)
        parent = session.scalar(select(Run.parent_run_id).where(Run.id == parent))
    return chain


def run_family(session: Session, run_id: str) -> list[str]:
    """Every run of the logical run ``run_id`` belongs to: its root and all the root's descendants."""
    root = run_chain(session, run_id)[-1]
    family, frontier = [root], [root]
    while frontier and len(family) < MAX_CHAIN:
        children = session.scalars(select(Run.id).where(Run.parent_run_id.in_(frontier))).all()
        frontier = [c for c in children if c not in family]
        family.extend(frontier)
    return family
