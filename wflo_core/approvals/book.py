"""Approval requests and decisions in the ledger's ``approvals`` table, each with its event.

A request and its ``ApprovalRequested`` event commit together, as do a decision (who, when, why)
and its ``ApprovalDecided`` event. A decision is a conditional update on a still-open row, so two
reviewers racing cannot both decide, and a timeout cannot overrule a human who just decided.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from wflo_core.approvals.policy import (
    APPROVED,
    ESCALATED,
    EXPIRED,
    OPEN_STATUSES,
    PENDING,
    REJECTED,
    TIMEOUT_ACTOR,
    ApprovalRequest,
    AutoApproveRule,
    Decision,
)
from wflo_core.errors import ApprovalError
from wflo_core.events.outbox import DEFAULT_RECORDER, EventRecorder
from wflo_core.events.schemas import ApprovalDecided, ApprovalRequested
from wflo_core.ledger.chain import run_chain
from wflo_core.ledger.models import Approval, Run, utcnow
from wflo_core.ledger.store import Ledger
from wflo_core.runs.waiting import WAITING_APPROVAL, close_waiting_run


@dataclass(frozen=True)
class ApprovalView:
    """A detached snapshot of one ``approvals`` row."""

    id: str
    run_id: str
    step_key: str
    reason: str
    context: dict[str, Any]
    approvers: list[str]
    status: str
    timeout_policy: str
    requested_at: datetime
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    continuation_run_id: str | None

    @property
    def kind(self) -> str:
        return str(self.context.get("kind", "gate"))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @classmethod
    def of(cls, row: Approval) -> ApprovalView:
        return cls(
            row.id,
            row.run_id,
            row.step_key,
            row.reason,
            dict(row.context),
            list(row.approvers),
            row.status,
            row.timeout_policy,
            row.requested_at,
            row.expires_at,
            row.decided_by,
            row.decided_at,
            row.decision_reason,
            row.continuation_run_id,
        )


def approval_id(run_id: str, step_key: str, kind: str) -> str:
    """Deterministic, so a retried step finds its own request instead of opening a second one."""
    return "apr-" + hashlib.sha256(f"{run_id}/{step_key}/{kind}".encode()).hexdigest()[:12]


class ApprovalBook:
    """Opens requests, records decisions, applies timeout policies."""

    def __init__(
        self, ledger: Ledger, *, record_event: EventRecorder = DEFAULT_RECORDER, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.ledger = ledger
        self.record_event = record_event
        self.clock = clock

    # ------------------------------------------------------------------ requests

    def gate(
        self,
        *,
        run_id: str,
        workflow: str,
        step_key: str,
        request: ApprovalRequest,
        rules: Sequence[AutoApproveRule] = (),
    ) -> ApprovalView:
        """The gate's approval for this run: one found along the run chain, else a new request."""
        with self.ledger.transaction() as session:
            self.ledger.ensure_run(session, run_id, workflow)
            chain = run_chain(session, run_id)
            found = session.scalars(
                select(Approval).where(Approval.run_id.in_(chain), Approval.step_key == step_key)
            ).all()
            found = [a for a in found if a.context.get("kind", "gate") == request.kind]
            if found:
                return ApprovalView.of(min(found, key=lambda a: chain.index(a.run_id)))  # the nearest run's
            return self.open(session, run_id=run_id, step_key=step_key, request=request, rules=rules)

    def open(
        self,
        session: Session,
        *,
        run_id: str,
        step_key: str,
        request: ApprovalRequest,
        rules: Sequence[AutoApproveRule] = (),
    ) -> ApprovalView:
        """Open the request in the caller's transaction (idempotent per run, step and kind).

        A matching auto-approve rule decides it at once (``auto:<rule>``) and the run goes on;
        otherwise the run is marked ``waiting_approval``.
        """
        now = self.clock()
        key = approval_id(run_id, step_key, request.kind)
        context = request.stored_context()
        created = self.ledger.insert_ignore(
            session,
            Approval,
            {
                "id": key,
                "run_id": run_id,
                "step_key": step_key,
                "reason": request.reason,
                "context": context,
                "approvers": list(request.approvers),
                "status": PENDING,
                "timeout_policy": request.on_timeout,
                "requested_at": now,
                "expires_at": now + request.timeout if request.timeout else None,
            },
            ["id"],
        )
        row = session.get(Approval, key, populate_existing=True)
        assert row is not None
        if not created:
            return ApprovalView.of(row)
        self.record_event(
            session,
            ApprovalRequested(
                run_id=run_id,
                approval_id=key,
                step_key=step_key,
                reason=request.reason,
                approvers=list(request.approvers),
                expires_at=row.expires_at,
            ),
        )
        rule = next((r for r in rules if r.matches(context)), None)
        if rule is not None:
            self._decide_row(
                session, row, APPROVED, f"auto:{rule.name}", f"auto-approved by rule {rule.name}"
            )
            row.continuation_run_id = run_id  # approved inside the run itself: nothing to launch
        else:
            run = session.get(Run, run_id)
            if run is not None and run.status == "running":
                run.status = WAITING_APPROVAL
                run.status_reason = f"waiting for approval {key} at {step_key}: {request.reason}"[:2000]
        session.flush()
        return ApprovalView.of(row)

    # ------------------------------------------------------------------ decisions

    def decide(self, approval_id: str, decision: Decision, *, by: str, reason: str) -> ApprovalView:
        """Record a human decision; ``ApprovalError`` if unknown, already decided or ``by`` may not decide."""
        if decision not in (APPROVED, REJECTED):
            raise ApprovalError(f"decision must be approved or rejected, got {decision!r}")
        if not by.strip():
            raise ApprovalError("a decision needs --by NAME (who decided), for the audit trail")
        with self.ledger.transaction() as session:
            row = self._get(session, approval_id)
            if row.status not in OPEN_STATUSES:
                raise ApprovalError(
                    f"approval {approval_id} was already {row.status} by {row.decided_by} at "
                    f"{row.decided_at:%Y-%m-%d %H:%M:%S}; a decision cannot be changed",
                    approval_id=approval_id,
                    status=row.status,
                )
            if row.approvers and by not in row.approvers:
                raise ApprovalError(
                    f"{by!r} may not decide approval {approval_id}; approvers: {', '.join(row.approvers)}",
                    approval_id=approval_id,
                )
            self._decide_row(session, row, decision, by, reason)
            return ApprovalView.of(row)

    def expire_due(self, now: datetime | None = None) -> list[ApprovalView]:
        """Apply the timeout policy of every open request past its deadline; returns those changed."""
        now = now or self.clock()
        changed: list[ApprovalView] = []
        with self.ledger.transaction() as session:
            due = session.scalars(
                select(Approval)
                .where(
                    Approval.status.in_(OPEN_STATUSES),
                    Approval.expires_at.is_not(None),
                    Approval.expires_at < now,
                )
                .order_by(Approval.expires_at)
            ).all()
            for row in due:
                if self._apply_timeout(session, row, now):
                    changed.append(ApprovalView.of(row))
        return changed

    def _apply_timeout(self, session: Session, row: Approval, now: datetime) -> bool:
        waited = f"no decision by {row.expires_at:%Y-%m-%d %H:%M:%S}"
        escalation = row.context.get("escalation")
        if row.timeout_policy == "escalate" and row.status == PENDING and escalation:
            seconds = escalation.get("timeout_seconds")
            claimed = self._transition(
                session,
                row,
                ESCALATED,
                approvers=list(escalation["approvers"]),
                timeout_policy="reject",
                expires_at=now + timedelta(seconds=seconds) if seconds else None,
            )
            if claimed:
                self.record_event(
                    session,
                    ApprovalDecided(
                        run_id=row.run_id,
                        approval_id=row.id,
                        step_key=row.step_key,
                        decision="escalated",
                        decided_by=TIMEOUT_ACTOR,
                        reason=f"{waited}; escalated to {', '.join(row.approvers)}",
                    ),
                )
            return claimed
        if row.timeout_policy == "approve":
            return self._decide_row(
                session, row, APPROVED, TIMEOUT_ACTOR, f"{waited}; timeout policy approves"
            )
        return self._decide_row(session, row, EXPIRED, TIMEOUT_ACTOR, f"{waited}; timeout policy rejects")

    def _decide_row(self, session: Session, row: Approval, status: Decision | Literal["expired"], by: str,
                    reason: str) -> bool:
        now = self.clock()
        if not self._transition(session, row, status, decided_by=by, decided_at=now, decision_reason=reason):
            return False
        self.record_event(
            session,
            ApprovalDecided(
                run_id=row.run_id,
                approval_id=row.id,
                step_key=row.step_key,
                decision=status,
                decided_by=by,
                reason=reason,
            ),
        )
        verdict = "approved" if status == APPROVED else status
        close_waiting_run(
            self.ledger,
            session,
            row.run_id,
            record_event=self.record_event,
            approved=status == APPROVED,
            reason=f"approval {row.id} at {row.step_key} {verdict} by {by}: {reason}",
        )
        return True

    def _transition(self, session: Session, row: Approval, status: str, **values: Any) -> bool:
        """Move an open row to ``status``; False if someone else closed it first."""
        # an UPDATE answers with a CursorResult, which Session.execute's signature does not say
        moved = cast(CursorResult[Any], session.execute(
            update(Approval)
            .where(Approval.id == row.id, Approval.status.in_(OPEN_STATUSES))
            .values(status=status, **values)
        )).rowcount
        session.refresh(row)
        return bool(moved)

    # ------------------------------------------------------------------ reading

    def get(self, approval_id: str) -> ApprovalView:
        with self.ledger.transaction() as session:
            return ApprovalView.of(self._get(session, approval_id))

    def list(self, *, status: str | None = None, run_id: str | None = None) -> list[ApprovalView]:
        query = select(Approval).order_by(Approval.requested_at.desc())
        if status:
            query = query.where(Approval.status == status)
        if run_id:
            query = query.where(Approval.run_id == run_id)
        with self.ledger.transaction() as session:
            return [ApprovalView.of(a) for a in session.scalars(query)]

    def awaiting_continuation(self) -> builtins.list[ApprovalView]:  # `list` here is the method above
        """Approved requests whose stopped run has not been continued yet (the sensor launches them)."""
        with self.ledger.transaction() as session:
            rows = session.scalars(
                select(Approval)
                .where(Approval.status == APPROVED, Approval.continuation_run_id.is_(None))
                .order_by(Approval.decided_at)
            ).all()
            return [ApprovalView.of(a) for a in rows]

    def mark_continued(self, approval_id: str, continuation_run_id: str) -> None:
        with self.ledger.transaction() as session:
            session.execute(
                update(Approval)
                .where(Approval.id == approval_id, Approval.continuation_run_id.is_(None))
                .values(continuation_run_id=continuation_run_id)
            )

    @staticmethod
    def _get(session: Session, approval_id: str) -> Approval:
        row = session.get(Approval, approval_id)
        if row is None:
            raise ApprovalError(
                f"no approval {approval_id!r}; see `wflo approvals list`", approval_id=approval_id
            )
        return row
