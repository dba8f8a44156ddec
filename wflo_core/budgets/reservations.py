"""Hard budgets by reservation: hold a call's upper-bound cost before sending, settle to the actual after.

The hold is a conditional ``UPDATE budgets SET held_usd = held_usd + :x WHERE spent + held + :x <= limit``
on every applicable budget, in one transaction, in budget-id order (no deadlocks). Postgres row locks
(and SQLite's single writer) make it atomic, so parallel steps in any number of processes can never
push settled spend past a limit. Holds of crashed steps expire after ``hold_ttl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY, ScopeRef
from wflo_core.errors import BudgetExceeded, ConfigError
from wflo_core.ledger.models import Budget, BudgetHold, utcnow
from wflo_core.ledger.store import Ledger


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
                 alert_thresholds: Sequence[int] = (50, 75, 90)) -> None:
        self.ledger = ledger
        self.hold_ttl = hold_ttl
        self.alert_thresholds = sorted(alert_thresholds)

    # ------------------------------------------------------------------ limits

    def set_limit(self, session: Session, scope: str, key: str, limit_usd: Decimal,
                  on_breach: str = "fail") -> Budget:
        if limit_usd < 0:
            raise ConfigError(f"budget limit for {scope} '{key}' must be >= 0, got {limit_usd}")
        if on_breach not in ("fail", "ask"):
            raise ConfigError(f"on_breach must be 'fail' or 'ask', got {on_breach!r}")
        budget = session.scalar(select(Budget).where(Budget.scope == scope, Budget.scope_key == key))
        if budget is None:
            budget = Budget(scope=scope, scope_key=key, limit_usd=limit_usd, on_breach=on_breach,
                            spent_usd=Decimal(0), held_usd=Decimal(0), alerts_sent=[])
            session.add(budget)
        else:
            budget.limit_usd = limit_usd
            budget.on_breach = on_breach
            budget.alerts_sent = [p for p in budget.alerts_sent if budget.spent_usd * 100 >= limit_usd * p]
        session.flush()
        return budget

    def ensure_limit(self, session: Session, scope: str, key: str, limit_usd: Decimal,
                     on_breach: str = "fail") -> None:
        """Create the budget if it does not exist yet (run budgets from tags/settings); never lowers."""
        self.ledger.insert_ignore(
            session, Budget,
            {"scope": scope, "scope_key": key, "limit_usd": limit_usd, "spent_usd": Decimal(0),
             "held_usd": Decimal(0), "on_breach": on_breach, "alerts_sent": [],
             "created_at": utcnow(), "updated_at": utcnow()},
            ["scope", "scope_key"],
        )

    def applicable(self, session: Session, refs: Sequence[ScopeRef]) -> list[Budget]:
        """The budgets that govern ``refs``, in id order (the lock order of reservations).

        Day/month budgets are set once as a template (key ``*``); each period gets its own counter,
        created here from the template the first time the period is charged.
        """
        wanted = {(r.scope, r.key) for r in refs}
        keys = {r.key for r in refs} | {PERIOD_TEMPLATE_KEY}
        rows = session.scalars(select(Budget).where(Budget.scope_key.in_(keys)).order_by(Budget.id)).all()
        have = {(b.scope, b.scope_key) for b in rows}
        templates = {b.scope: b for b in rows if b.scope_key == PERIOD_TEMPLATE_KEY}
        missing = [r for r in refs if r.scope in templates and (r.scope, r.key) not in have]
        for ref in missing:
            template = templates[ref.scope]
            self.ensure_limit(session, ref.scope, ref.key, template.limit_usd, template.on_breach)
        if missing:
            rows = session.scalars(select(Budget).where(Budget.scope_key.in_(keys)).order_by(Budget.id)).all()
        return [b for b in rows if (b.scope, b.scope_key) in wanted]

    def usage(self, session: Session, refs: Sequence[ScopeRef] | None = None) -> list[BudgetUsage]:
        rows = self.applicable(session, refs) if refs is not None else session.scalars(
            select(Budget).order_by(Budget.scope, Budget.scope_key)).all()
        return [BudgetUsage(b.scope, b.scope_key, b.limit_usd, b.spent_usd, b.held_usd, b.on_breach)
                for b in rows]

    # ------------------------------------------------------------------ reservation

    def reserve(self, refs: Sequence[ScopeRef], call_key: str, amount_usd: Decimal,
                *, run_id: str | None = None) -> list[Hold]:
        """Hold ``amount_usd`` on every applicable budget, all or nothing; ``BudgetExceeded`` if any is full."""
        try:
            return self._reserve(refs, call_key, amount_usd, run_id)
        except BudgetExceeded:
            # Holds of crashed steps may be what fills the budget: expire them and try once more.
            with self.ledger.transaction() as session:
                expired = self.expire_stale(session)
            if not expired:
                raise
            return self._reserve(refs, call_key, amount_usd, run_id)

    def _reserve(self, refs: Sequence[ScopeRef], call_key: str, amount_usd: Decimal,
                 run_id: str | None) -> list[Hold]:
        with self.ledger.transaction() as session:
            budgets = self.applicable(session, refs)
            holds: list[Hold] = []
            for budget in budgets:
                held = session.execute(
                    update(Budget)
                    .where(Budget.id == budget.id,
                           Budget.spent_usd + Budget.held_usd + amount_usd <= Budget.limit_usd)
                    .values(held_usd=Budget.held_usd + amount_usd, updated_at=utcnow())
                    .returning(Budget.id)
                ).first()
                if held is None:
                    session.refresh(budget)
                    raise BudgetExceeded(
                        scope=budget.scope, scope_key=budget.scope_key, limit_usd=budget.limit_usd,
                        spent_usd=budget.spent_usd, held_usd=budget.held_usd, requested_usd=amount_usd,
                    )
                session.add(BudgetHold(budget_id=budget.id, call_key=call_key, run_id=run_id,
                                       amount_usd=amount_usd, status="held",
                                       expires_at=utcnow() + self.hold_ttl))
                holds.append(Hold(budget.id, budget.scope, budget.scope_key, amount_usd))
            return holds

    def settle(self, session: Session, call_key: str, actual_usd: Decimal) -> list[ThresholdCrossed]:
        """Turn a call's holds into spend (in the caller's transaction, with the ledger row and events)."""
        return self._close_holds(session, call_key, actual_usd, "settled")

    def release(self, session: Session, call_key: str) -> None:
        """Drop a call's holds without spending (the call failed before the provider billed it)."""
        self._close_holds(session, call_key, Decimal(0), "released")

    def _close_holds(self, session: Session, call_key: str, actual_usd: Decimal,
                     status: str) -> list[ThresholdCrossed]:
        holds = session.scalars(select(BudgetHold).where(
            BudgetHold.call_key == call_key, BudgetHold.status == "held").order_by(BudgetHold.budget_id)
        ).all()
        crossed: list[ThresholdCrossed] = []
        for hold in holds:
            self._drop_hold(session, hold, status, spent_usd=actual_usd)
            if actual_usd > 0:
                crossed.extend(self._check_thresholds(session, hold.budget_id))
        return crossed

    def charge(self, session: Session, refs: Sequence[ScopeRef], actual_usd: Decimal) -> list[ThresholdCrossed]:
        """Add spend that had no hold (e.g. a late settlement after the hold expired)."""
        crossed: list[ThresholdCrossed] = []
        for budget in self.applicable(session, refs):
            session.execute(update(Budget).where(Budget.id == budget.id).values(
                spent_usd=Budget.spent_usd + actual_usd, updated_at=utcnow()))
            crossed.extend(self._check_thresholds(session, budget.id))
        return crossed

    def _check_thresholds(self, session: Session, budget_id: int) -> list[ThresholdCrossed]:
        budget = session.get(Budget, budget_id, populate_existing=True,
                             with_for_update=self.ledger.dialect == "postgresql")
        if budget is None or budget.limit_usd <= 0:
            return []
        due = [p for p in self.alert_thresholds
               if p not in budget.alerts_sent and budget.spent_usd * 100 >= budget.limit_usd * p]
        if not due:
            return []
        budget.alerts_sent = sorted({*budget.alerts_sent, *due})
        return [ThresholdCrossed(budget.scope, budget.scope_key, p, budget.limit_usd, budget.spent_usd)
                for p in due]

    def expire_stale(self, session: Session, now: datetime | None = None) -> int:
        """Release holds whose step never settled them (crashed or killed) once they pass ``expires_at``."""
        query = select(BudgetHold).where(BudgetHold.status == "held", BudgetHold.expires_at < (now or utcnow()))
        if self.ledger.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        stale = session.scalars(query).all()
        for hold in stale:
            self._drop_hold(session, hold, "expired")
        return len(stale)

    def release_run(self, session: Session, run_id: str) -> int:
        """Release every open hold of a run (the run-status sensor closes out crashed runs)."""
        holds = session.scalars(select(BudgetHold).where(
            BudgetHold.run_id == run_id, BudgetHold.status == "held")).all()
        for hold in holds:
            self._drop_hold(session, hold, "released")
        return len(holds)

    @staticmethod
    def _drop_hold(session: Session, hold: BudgetHold, status: str, *, spent_usd: Decimal = Decimal(0)) -> None:
        """Take the hold off its budget (adding what was actually spent) and mark it ``status``."""
        session.execute(update(Budget).where(Budget.id == hold.budget_id).values(
            held_usd=Budget.held_usd - hold.amount_usd, spent_usd=Budget.spent_usd + spent_usd,
            updated_at=utcnow()))
        hold.status = status
