"""Hard budgets by reservation: hold an attempt's upper-bound cost before sending, settle to the actual after.

The hold is one conditional ``UPDATE budgets SET held_usd = held_usd + :x WHERE spent + held + :x <= limit``
over every applicable budget, rows locked in id order (no deadlocks), in the transaction that also
writes the attempt's ``llm_calls`` row. Postgres row locks (and SQLite's single writer) make it
atomic, so parallel steps in any number of processes can never push spend past a limit.

Every hold ends exactly once, claimed by an ``UPDATE ... WHERE status = 'held'`` (so two closers can
never subtract it twice): ``settled`` at the priced cost, ``released`` when the provider did not bill
the attempt, or ``estimated`` (charged at its bound) when nobody can know: a timeout, a dropped
stream, a crashed step whose hold expired, a run closed out with the call in flight. A settlement that
arrives after its hold was estimated replaces the estimate with the actual cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Row, func, insert, select, update
from sqlalchemy.orm import Session

from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY, ScopeRef
from wflo_core.errors import BudgetExceeded, ConfigError
from wflo_core.ledger.chain import run_chain
from wflo_core.ledger.models import Budget, BudgetHold, LLMCall, utcnow
from wflo_core.ledger.store import Ledger

OnBreach = Literal["fail", "ask", "fit"]
ON_BREACH: tuple[OnBreach, ...] = ("fail", "ask", "fit")
T = TypeVar("T")
UnknownBilling = Literal["charge", "release"]
"""What closing a hold whose billing is unknown does: charge its bound (``estimated``) or drop it."""


@dataclass(frozen=True, slots=True)
class Hold:
    budget_id: int
    scope: str
    scope_key: str
    amount_usd: Decimal


@dataclass(frozen=True, slots=True)
class ThresholdCrossed:
    scope: str
    scope_key: str
    percent: int
    limit_usd: Decimal
    spent_usd: Decimal


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    scope: str
    scope_key: str
    limit_usd: Decimal
    spent_usd: Decimal
    held_usd: Decimal
    on_breach: str

    @property
    def remaining_usd(self) -> Decimal:
        return max(Decimal(0), self.limit_usd - self.spent_usd - self.held_usd)


class BudgetBook:
    """Budget limits, holds and settlement on the ledger."""

    def __init__(self, ledger: Ledger, *, hold_ttl: timedelta = timedelta(minutes=15),
                 alert_thresholds: Sequence[int] = (50, 75, 90), unknown_billing: UnknownBilling = "charge") -> None:
        self.ledger = ledger
        self.hold_ttl = hold_ttl
        self.alert_thresholds = sorted(alert_thresholds)
        self.unknown_billing = unknown_billing

    # ------------------------------------------------------------------ limits

    def set_limit(self, session: Session, scope: str, key: str, limit_usd: Decimal,
                  on_breach: str = "fail") -> Budget:
        self.ensure_limit(session, scope, key, limit_usd, on_breach)  # safe against a concurrent first set
        budget = session.scalar(select(Budget).where(Budget.scope == scope, Budget.scope_key == key)
                                .with_for_update())
        assert budget is not None
        if (budget.limit_usd, budget.on_breach) != (limit_usd, on_breach):
            budget.limit_usd = limit_usd
            budget.on_breach = on_breach
            budget.alerts_sent = [p for p in budget.alerts_sent if budget.spent_usd * 100 >= limit_usd * p]
            session.flush()
        return budget

    def ensure_limit(self, session: Session, scope: str, key: str, limit_usd: Decimal,
                     on_breach: str = "fail") -> None:
        """Create the budget if it does not exist yet (run budgets from tags/settings); never lowers."""
        check_limit(scope, key, limit_usd, on_breach)
        self.ledger.insert_ignore(
            session, Budget,
            {"scope": scope, "scope_key": key, "limit_usd": limit_usd, "spent_usd": Decimal(0),
             "held_usd": Decimal(0), "on_breach": on_breach, "alerts_sent": [],
             "created_at": utcnow(), "updated_at": utcnow()},
            ["scope", "scope_key"],
        )

    def applicable(self, session: Session, refs: Sequence[ScopeRef], *, lock: bool = False) -> list[Budget]:
        """The budgets that govern ``refs``, in id order (the lock order of every budget write).

        Day/month budgets are set once as a template (key ``*``); each period gets its own counter,
        created here from the template the first time the period is charged. ``lock`` takes their
        row locks (Postgres), in id order, before the caller writes anything else.
        """
        wanted = {(r.scope, r.key) for r in refs}
        keys = {r.key for r in refs} | {PERIOD_TEMPLATE_KEY}
        query = select(Budget).where(Budget.scope_key.in_(keys)).order_by(Budget.id)
        rows = session.scalars(query.with_for_update() if lock else query).all()
        have = {(b.scope, b.scope_key) for b in rows}
        templates = {b.scope: b for b in rows if b.scope_key == PERIOD_TEMPLATE_KEY}
        missing = [r for r in refs if r.scope in templates and (r.scope, r.key) not in have]
        for ref in missing:
            template = templates[ref.scope]
            self.ensure_limit(session, ref.scope, ref.key, template.limit_usd, template.on_breach)
        if missing:
            rows = session.scalars(query.with_for_update() if lock else query).all()
        return [b for b in rows if (b.scope, b.scope_key) in wanted]

    def run_chain_spend(self, session: Session, run_id: str) -> Decimal:
        """What ``run_id`` and the runs it continues spent (and still hold) on their run budgets."""
        chain = run_chain(session, run_id)
        total = session.scalar(select(func.coalesce(func.sum(Budget.spent_usd + Budget.held_usd), Decimal(0)))
                               .where(Budget.scope == "run", Budget.scope_key.in_(chain)))
        return total if total is not None else Decimal(0)

    def remaining(self, session: Session, scope: str, key: str) -> Decimal | None:
        """What a budget has left (limit − spent − held), or None if there is no such budget."""
        budget = session.scalar(select(Budget).where(Budget.scope == scope, Budget.scope_key == key))
        return None if budget is None else max(Decimal(0), budget.limit_usd - budget.spent_usd - budget.held_usd)

    def usage(self, session: Session, refs: Sequence[ScopeRef] | None = None) -> list[BudgetUsage]:
        rows = self.applicable(session, refs) if refs is not None else session.scalars(
            select(Budget).order_by(Budget.scope, Budget.scope_key)).all()
        return [BudgetUsage(b.scope, b.scope_key, b.limit_usd, b.spent_usd, b.held_usd, b.on_breach)
                for b in rows]

    # ------------------------------------------------------------------ reservation

    def reserve(self, refs: Sequence[ScopeRef], call_key: str, amount_usd: Decimal, *, run_id: str | None = None,
                ttl: timedelta | None = None) -> list[Hold]:
        """Hold ``amount_usd`` on every applicable budget in a transaction of its own (see :meth:`hold`)."""

        def hold() -> list[Hold]:
            with self.ledger.transaction() as session:
                return self.hold(session, refs, call_key, amount_usd, run_id=run_id, ttl=ttl)

        return self.after_expiring_stale(hold)

    def after_expiring_stale(self, reserve: Callable[[], T]) -> T:
        """Run ``reserve``; when a budget refuses, expire stale holds and, if any were, try once more
        (holds of crashed steps may be what fills the budget)."""
        try:
            return reserve()
        except BudgetExceeded:
            with self.ledger.transaction() as session:
                expired = self.expire_stale(session)
            if not expired:
                raise
            return reserve()

    def hold(self, session: Session, refs: Sequence[ScopeRef], call_key: str, amount_usd: Decimal, *,
             run_id: str | None = None, ttl: timedelta | None = None) -> list[Hold]:
        """Hold ``amount_usd`` on every applicable budget, all or nothing; ``BudgetExceeded`` if any is full.

        In the caller's transaction: the gateway writes the attempt's ledger row in the same one.
        """
        return self._hold(session, refs, call_key, amount_usd, run_id, ttl)

    def _hold(self, session: Session, refs: Sequence[ScopeRef], call_key: str, amount_usd: Decimal,
              run_id: str | None, ttl: timedelta | None) -> list[Hold]:
        budgets = self.applicable(session, refs, lock=True)
        if not budgets:
            return []
        ids = [b.id for b in budgets]
        held = set(session.scalars(
            update(Budget)
            .where(Budget.id.in_(ids), Budget.spent_usd + Budget.held_usd + amount_usd <= Budget.limit_usd)
            .values(held_usd=Budget.held_usd + amount_usd, updated_at=utcnow())
            .returning(Budget.id)
        ))
        if len(held) < len(ids):
            full = next(b for b in budgets if b.id not in held)
            session.refresh(full)
            raise BudgetExceeded(
                scope=full.scope, scope_key=full.scope_key, limit_usd=full.limit_usd, spent_usd=full.spent_usd,
                held_usd=full.held_usd, requested_usd=amount_usd, on_breach=full.on_breach,
            )
        expires_at = utcnow() + (ttl or self.hold_ttl)
        session.execute(insert(BudgetHold), [
            {"budget_id": b.id, "call_key": call_key, "run_id": run_id, "amount_usd": amount_usd, "status": "held",
             "expires_at": expires_at, "created_at": utcnow()} for b in budgets])
        return [Hold(b.id, b.scope, b.scope_key, amount_usd) for b in budgets]

    def renew(self, session: Session, call_key: str, ttl: timedelta | None = None) -> None:
        """Push an in-flight call's hold expiry out (a long stream is still being read)."""
        session.execute(update(BudgetHold).where(BudgetHold.call_key == call_key, BudgetHold.status == "held")
                        .values(expires_at=utcnow() + (ttl or self.hold_ttl)))

    # ------------------------------------------------------------------ closing holds

    def settle(self, session: Session, call_key: str, actual_usd: Decimal) -> list[ThresholdCrossed]:
        """Turn a call's holds into spend of ``actual_usd`` (in the caller's transaction, with the ledger
        row and events). A hold already estimated or released (it outlived its TTL, or its run was closed
        out) still gets the actual cost: the estimate is replaced, a release is charged."""
        self._lock_budgets_of(session, BudgetHold.call_key == call_key)
        claimed = self._claim(session, call_key, ("held",), "settled")
        if claimed:
            return self._apply(session, claimed, spent=actual_usd, held=True)
        crossed: list[ThresholdCrossed] = []
        for prior in ("estimated", "released"):
            late = self._claim(session, call_key, (prior,), "settled")
            if late:
                delta = actual_usd - late[0][1] if prior == "estimated" else actual_usd
                crossed += self._apply(session, late, spent=delta, held=False)
        return crossed

    def release(self, session: Session, call_key: str) -> None:
        """Drop a call's holds without spending (the provider did not bill the attempt). An estimate
        already charged for it (its hold expired while it was in flight) is taken back."""
        self._lock_budgets_of(session, BudgetHold.call_key == call_key)
        claimed = self._claim(session, call_key, ("held",), "released")
        self._apply(session, claimed, spent=Decimal(0), held=True)
        if not claimed and (estimated := self._claim(session, call_key, ("estimated",), "released")):
            self._apply(session, estimated, spent=-estimated[0][1], held=False)

    def charge_bound(self, session: Session, call_key: str) -> tuple[Decimal | None, list[ThresholdCrossed]]:
        """Charge a call whose billing is unknown at its held bound (``estimated``), or drop the holds if
        the book is set to ``unknown_billing="release"``. The amount charged (None if nothing was held)."""
        if self.unknown_billing == "release":
            self.release(session, call_key)
            return None, []
        self._lock_budgets_of(session, BudgetHold.call_key == call_key)
        claimed = self._claim(session, call_key, ("held",), "estimated")
        if not claimed:
            return None, []
        amount = claimed[0][1]
        return amount, self._apply(session, claimed, spent=amount, held=True)

    def expire_stale(self, session: Session, now: datetime | None = None) -> int:
        """Close holds whose step never did (crashed or killed) once they pass ``expires_at``: billing is
        unknown, so they are charged at their bound (or dropped under ``unknown_billing="release"``)."""
        stale = (BudgetHold.status == "held", BudgetHold.expires_at < (now or utcnow()))
        self._lock_budgets_of(session, *stale)
        keys = session.scalars(select(BudgetHold.call_key).distinct().where(*stale)).all()
        return sum(self._close_unknown(session, key) for key in keys)

    def close_run_holds(self, session: Session, run_id: str) -> int:
        """Close every hold still open for a run that ended (the run-status close-out); as ``expire_stale``."""
        open_holds = (BudgetHold.run_id == run_id, BudgetHold.status == "held")
        self._lock_budgets_of(session, *open_holds)
        keys = session.scalars(select(BudgetHold.call_key).distinct().where(*open_holds)).all()
        closed = sum(self._close_unknown(session, key) for key in keys)
        # attempts in flight under no budget at all: their rows are estimated too
        self._mark_unknown(session, LLMCall.run_id == run_id)
        return closed

    def _close_unknown(self, session: Session, call_key: str) -> int:
        amount, _ = self.charge_bound(session, call_key)
        self._mark_unknown(session, LLMCall.idempotency_key == call_key)
        return 1 if amount is not None or self.unknown_billing == "release" else 0

    def _mark_unknown(self, session: Session, which: ColumnElement[bool]) -> None:
        """The ledger rows of attempts closed with unknown billing: ``estimated`` at their bound, or ``failed``."""
        values = ({"status": "estimated", "cost_usd": LLMCall.bound_usd} if self.unknown_billing == "charge"
                  else {"status": "failed", "error": "closed before the provider answered; not charged"})
        session.execute(update(LLMCall).where(which, LLMCall.status == "held").values(**values))

    @staticmethod
    def _lock_budgets_of(session: Session, *holds: Any) -> None:
        """Lock, in id order, the budgets of the holds matching ``holds``, before touching the holds or
        the calls' rows: every transaction that writes budgets takes their locks first and in the
        same order, so concurrent reserve, settle, expiry and close-out can never deadlock (Postgres;
        SQLite has a single writer)."""
        session.execute(select(Budget.id).where(Budget.id.in_(select(BudgetHold.budget_id).where(*holds)))
                        .order_by(Budget.id).with_for_update())

    def _claim(self, session: Session, call_key: str, prior: tuple[str, ...], status: str) -> list[tuple[int, Decimal]]:
        """Move the call's holds in ``prior`` to ``status``; (budget id, amount) of those this caller won."""
        rows = session.execute(
            update(BudgetHold).where(BudgetHold.call_key == call_key, BudgetHold.status.in_(prior))
            .values(status=status).returning(BudgetHold.budget_id, BudgetHold.amount_usd)).all()
        return sorted((r[0], r[1]) for r in rows)

    def _apply(self, session: Session, claimed: list[tuple[int, Decimal]], *, spent: Decimal,
               held: bool) -> list[ThresholdCrossed]:
        """Move claimed holds off their budgets (``held``), add ``spent``; the thresholds this crossed."""
        if not claimed:
            return []
        amount = claimed[0][1]
        values = {"spent_usd": Budget.spent_usd + spent, "updated_at": utcnow()}
        if held:
            values["held_usd"] = Budget.held_usd - amount
        rows = session.execute(
            update(Budget).where(Budget.id.in_([b for b, _ in claimed])).values(**values)
            .returning(Budget.id, Budget.scope, Budget.scope_key, Budget.limit_usd, Budget.spent_usd,
                       Budget.alerts_sent)).all()
        return self._thresholds(session, rows) if spent > 0 else []

    def alerts_due(self, limit_usd: Decimal, spent_usd: Decimal, sent: Sequence[int]) -> list[int]:
        """The thresholds a budget at ``spent_usd`` has crossed and not alerted yet."""
        if limit_usd <= 0:
            return []
        return [p for p in self.alert_thresholds if p not in sent and spent_usd * 100 >= limit_usd * p]

    def claim_alerts(self, session: Session, budget_ids: Sequence[int]) -> list[ThresholdCrossed]:
        """Lock the budgets and mark their due alerts sent; the thresholds crossed (each claimed once)."""
        rows = session.execute(
            select(Budget.id, Budget.scope, Budget.scope_key, Budget.limit_usd, Budget.spent_usd, Budget.alerts_sent)
            .where(Budget.id.in_(budget_ids)).order_by(Budget.id).with_for_update()).all()
        return self._thresholds(session, rows)

    def _thresholds(self, session: Session,
                    rows: Sequence[Row[int, str, str, Decimal, Decimal, list[int]]]) -> list[ThresholdCrossed]:
        """Alerts due on budgets this transaction just updated (their rows are locked until commit)."""
        crossed: list[ThresholdCrossed] = []
        for budget_id, scope, key, limit, spent, sent in rows:
            due = self.alerts_due(limit, spent, sent)
            if due:
                session.execute(update(Budget).where(Budget.id == budget_id)
                                .values(alerts_sent=sorted({*sent, *due})))
                crossed += [ThresholdCrossed(scope, key, p, limit, spent) for p in due]
        return crossed


def check_limit(scope: str, key: str, limit_usd: Decimal, on_breach: str) -> None:
    if limit_usd < 0:
        raise ConfigError(f"budget limit for {scope} '{key}' must be >= 0, got {limit_usd}")
    if on_breach not in ON_BREACH:
        raise ConfigError(f"on_breach must be one of {', '.join(ON_BREACH)}, got {on_breach!r}")
