"""Register undo actions as steps make side effects; on rollback run them newest first, once each.

Every compensation row moves ``registered → running → done | failed``, each move a conditional
update committed before (``running``) and after (``done``/``failed``) the action runs:

* a completed compensation is never run again, however often rollback is invoked;
* one rollback at a time per logical run (a Postgres advisory lock), so a row still ``running``
  when a rollback starts was interrupted (its process died); it runs again with the same
  idempotency key, and that is recorded;
* a failing compensation is recorded with its error and the rest still run; it is not retried
  automatically (``retry_failed=True`` does).
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypedDict

from sqlalchemy import func, select, text, update

from wflo_core.compensation.actions import Action, action_path, resolve_action
from wflo_core.errors import CompensationError, LedgerError
from wflo_core.ledger.chain import run_family
from wflo_core.ledger.models import Compensation, Run, utcnow
from wflo_core.ledger.store import Ledger

REGISTERED, RUNNING, DONE, FAILED = "registered", "running", "done", "failed"


class _Identity(TypedDict):
    """The fields of a ``CompensationOutcome`` that name its compensation."""

    run_id: str
    seq: int
    step_key: str
    action: str


@dataclass(frozen=True)
class CompensationOutcome:
    run_id: str
    seq: int
    step_key: str
    action: str
    status: str
    """done, failed, or already_done / already_failed when an earlier rollback settled it."""
    resumed: bool = False
    """The action had been interrupted by a killed rollback and was run again."""
    error: str | None = None


@dataclass
class RollbackReport:
    run_ids: list[str]
    outcomes: list[CompensationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CompensationOutcome]:
        return [o for o in self.outcomes if o.status in (FAILED, "already_failed")]

    @property
    def ok(self) -> bool:
        return not self.failed


def idempotency_key(run_id: str, seq: int) -> str:
    return f"{run_id}:{seq}"


class CompensationBook:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def register(
        self,
        *,
        run_id: str,
        workflow: str,
        step_key: str,
        action: Action | str,
        payload: Mapping[str, Any] | None = None,
    ) -> int:
        """Record an undo for a side effect just made; returns its ``seq``.

        Registering the same action and payload from the same step again anywhere in the logical
        run (a retried or resumed step) returns the existing entry instead of undoing twice.
        """
        path = action_path(action)
        document = _json_payload(path, payload or {})
        fingerprint = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        for _ in range(5):
            try:
                with self.ledger.transaction() as session:
                    self.ledger.ensure_run(session, run_id, workflow)
                    family = run_family(session, run_id)
                    for row in session.scalars(
                        select(Compensation).where(
                            Compensation.run_id.in_(family),
                            Compensation.step_key == step_key,
                            Compensation.action == path,
                        )
                    ):
                        if (
                            hashlib.sha256(json.dumps(row.payload, sort_keys=True).encode()).hexdigest()
                            == fingerprint
                        ):
                            return row.seq
                    seq = (
                        session.scalar(
                            select(func.max(Compensation.seq)).where(Compensation.run_id == run_id)
                        )
                        or 0
                    ) + 1
                    session.add(
                        Compensation(
                            run_id=run_id,
                            step_key=step_key,
                            seq=seq,
                            action=path,
                            payload=document,
                            status=REGISTERED,
                            created_at=utcnow(),
                        )
                    )
                    return seq
            except LedgerError:  # another step of the run took this seq; take the next one
                continue
        raise CompensationError(f"could not register compensation {path} for run {run_id}: seq contention")

    def rollback(self, run_id: str, *, retry_failed: bool = False) -> RollbackReport:
        """Run the compensations of ``run_id``'s logical run (its chain and continuations), newest first."""
        with self.ledger.transaction() as session:
            family = run_family(session, run_id)
        report = RollbackReport(family)
        with self._exclusive(family[0]):
            with self.ledger.transaction() as session:
                ids = session.scalars(
                    select(Compensation.id)
                    .where(Compensation.run_id.in_(family))
                    .order_by(Compensation.id.desc())
                ).all()
            for comp_id in ids:
                report.outcomes.append(self._run_one(comp_id, retry_failed))
            self._mark_runs(family, report)
        return report

    def _run_one(self, comp_id: int, retry_failed: bool) -> CompensationOutcome:
        claimable = (REGISTERED, RUNNING, FAILED) if retry_failed else (REGISTERED, RUNNING)
        with self.ledger.transaction() as session:
            row = session.get(Compensation, comp_id)
            assert row is not None
            resumed = row.status == RUNNING
            base: _Identity = {"run_id": row.run_id, "seq": row.seq, "step_key": row.step_key, "action": row.action}
            if row.status not in claimable:
                return CompensationOutcome(**base, status=f"already_{row.status}", error=row.error)
            session.execute(
                update(Compensation)
                .where(Compensation.id == comp_id)
                .values(
                    status=RUNNING,
                    executed_at=utcnow(),
                    error="resumed after an interrupted rollback" if resumed else None,
                )
            )
            payload, key = dict(row.payload), idempotency_key(row.run_id, row.seq)
        try:
            resolve_action(base["action"])(payload, key)
        except Exception as err:  # a failing compensation is reported; the others still run
            error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"[:4000]
            self._finish(comp_id, FAILED, error)
            return CompensationOutcome(**base, status=FAILED, resumed=resumed, error=error.splitlines()[0])
        self._finish(comp_id, DONE, None)
        return CompensationOutcome(**base, status=DONE, resumed=resumed)

    def _finish(self, comp_id: int, status: str, error: str | None) -> None:
        with self.ledger.transaction() as session:
            session.execute(
                update(Compensation)
                .where(Compensation.id == comp_id, Compensation.status == RUNNING)
                .values(status=status, error=error, executed_at=utcnow())
            )

    def _mark_runs(self, family: list[str], report: RollbackReport) -> None:
        with self.ledger.transaction() as session:
            for run in session.scalars(select(Run).where(Run.id.in_(family))):
                if report.ok:
                    run.status, run.status_reason = (
                        "rolled_back",
                        f"rolled back ({len(report.outcomes)} compensations)",
                    )
                    run.ended_at = run.ended_at or utcnow()
                else:
                    run.status_reason = (
                        f"rollback incomplete: {len(report.failed)} compensation(s) failed; "
                        f"see `wflo runs rollback {family[0]}`"
                    )

    @contextmanager
    def _exclusive(self, root_run_id: str) -> Iterator[None]:
        """One rollback per logical run at a time (Postgres advisory lock; SQLite has a single writer)."""
        if self.ledger.dialect != "postgresql":
            yield
            return
        lock_key = int.from_bytes(
            hashlib.sha256(f"wflo-rollback/{root_run_id}".encode()).digest()[:8], "big", signed=True
        )
        with self.ledger.engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key}).scalar():
                raise CompensationError(
                    f"a rollback of run {root_run_id} is already in progress; try again when it has finished"
                )
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
                conn.commit()


def _json_payload(path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = json.loads(json.dumps(dict(payload), allow_nan=False))  # a JSON object
        return decoded
    except (TypeError, ValueError) as err:
        raise CompensationError(f"payload of compensation {path} must be JSON: {err}") from None
