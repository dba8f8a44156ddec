"""Named JSON state a step saves, read back along the run chain so a resumed run starts from it.

Each save is a new version of ``(run, name)``; :meth:`CheckpointStore.load` returns the newest
version in the nearest run of the chain (this run, then the run it resumes, and so on), so a
re-execution of a failed run picks up where the failed attempt left off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wflo_core.errors import ConfigError
from wflo_core.ledger.chain import run_chain
from wflo_core.ledger.models import Checkpoint, utcnow
from wflo_core.ledger.store import Ledger


@dataclass(frozen=True)
class SavedState:
    run_id: str
    step_key: str
    name: str
    version: int
    state: dict[str, Any]
    created_at: datetime


class CheckpointStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def save(self, *, run_id: str, workflow: str, step_key: str, name: str, state: Mapping[str, Any]) -> int:
        """Store ``state`` (a JSON object) as the next version of ``name`` in this run; returns it."""
        with self.ledger.transaction() as session:
            return self.save_in(session, run_id=run_id, workflow=workflow, step_key=step_key, name=name,
                                state=state)

    def save_in(self, session: Session, *, run_id: str, workflow: str, step_key: str, name: str,
                state: Mapping[str, Any]) -> int:
        """As :meth:`save`, in the caller's transaction (so it commits with what it records)."""
        document = _json_object(name, state)
        self.ledger.ensure_run(session, run_id, workflow)
        latest = (
            session.scalar(
                select(func.max(Checkpoint.version)).where(
                    Checkpoint.run_id == run_id, Checkpoint.name == name
                )
            )
            or 0
        )
        session.add(
            Checkpoint(
                run_id=run_id,
                step_key=step_key,
                name=name,
                version=latest + 1,
                state=document,
                created_at=utcnow(),
            )
        )
        return latest + 1

    def load(self, run_id: str, name: str) -> SavedState | None:
        """The newest ``name`` of the nearest run on the chain from ``run_id``, or None."""
        with self.ledger.transaction() as session:
            chain = run_chain(session, run_id)
            rows = session.scalars(
                select(Checkpoint).where(Checkpoint.run_id.in_(chain), Checkpoint.name == name)
            ).all()
            if not rows:
                return None
            best = min(rows, key=lambda c: (chain.index(c.run_id), -c.version))
            return SavedState(
                best.run_id, best.step_key, best.name, best.version, dict(best.state), best.created_at
            )

    def names(self, run_id: str) -> list[str]:
        """Every checkpoint name visible from ``run_id`` (its chain), sorted."""
        with self.ledger.transaction() as session:
            chain = run_chain(session, run_id)
            return sorted(set(session.scalars(select(Checkpoint.name).where(Checkpoint.run_id.in_(chain)))))


def _json_object(name: str, state: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(state, Mapping):
        raise ConfigError(
            f"checkpoint {name!r} state must be a JSON object (a dict), got {type(state).__name__}"
        )
    try:
        decoded: dict[str, Any] = json.loads(json.dumps(dict(state), allow_nan=False))  # a dict dumped is a JSON object
        return decoded
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"checkpoint {name!r} state must be JSON (str, numbers, lists, dicts): {err}"
        ) from None
