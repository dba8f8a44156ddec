"""Where an attempt's hold and settlement are written: ORM transactions anywhere, one statement each on Postgres.

Every paid call writes twice: before it is sent (the hold on every applicable budget and the attempt's
``held`` row) and after it answered (the hold turned into spend, the row priced, its events queued).
:class:`AttemptWrites` does each in one ORM transaction through :class:`~wflo_core.budgets.BudgetBook`,
on any database. :class:`PostgresAttemptWrites` does the common case of each in one statement (one
round trip, atomic as every statement is) with the same guarantees: budget rows locked ``FOR UPDATE``
in id order before anything else is written, all or nothing, a hold claimed by ``status = 'held'`` so
it ends once. What its statements do not handle they leave untouched, and the ORM path takes over: a
run's first call (its run row), a period budget's first charge (its counter, from the template), and
a settlement whose hold was already closed (estimated or released) before the answer arrived.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from wflo_core.budgets import BudgetBook, ThresholdCrossed
from wflo_core.budgets.scopes import ScopeRef
from wflo_core.calls import Usage
from wflo_core.errors import BudgetExceeded
from wflo_core.events.outbox import EventRecorder, outbox_insert, outbox_params
from wflo_core.events.schemas import EventData
from wflo_core.ledger.models import utcnow
from wflo_core.ledger.store import Ledger

OnCrossed = Callable[[Session, list[ThresholdCrossed]], None]
"""Records the alerts of budget thresholds a settlement crossed, in the transaction that marks them sent."""


@dataclass(frozen=True, slots=True)
class HeldRow:
    """An attempt about to be sent: its ``llm_calls`` row (status ``held``) and what it holds."""

    key: str
    run_id: str
    refs: Sequence[ScopeRef]
    bound_usd: Decimal
    ttl: timedelta
    columns: dict[str, Any]
    """The row's other columns (step, model, attempt number, output limits, tags...)."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an answered attempt cost, as the provider's usage priced it."""

    key: str
    status: str
    """``settled``, or ``over_bound`` when the usage cost more than the hold."""
    usage: Usage
    cost_usd: Decimal
    price_version: str
    latency_ms: int
    events: Sequence[EventData]


class AttemptWrites:
    """An attempt's two writes, each one ORM transaction (any database)."""

    def __init__(self, ledger: Ledger, budgets: BudgetBook, record_event: EventRecorder) -> None:
        self.ledger = ledger
        self.budgets = budgets
        self.record_event = record_event

    def hold(self, row: HeldRow, ensure_run: Callable[[Session], None] | None) -> None:
        """Hold the attempt's bound and write its row, or raise ``BudgetExceeded`` having written nothing.
        ``ensure_run`` records the run first when this process has not seen it committed yet."""
        with self.ledger.transaction() as session:
            if ensure_run is not None:
                ensure_run(session)
            self.budgets.hold(session, row.refs, row.key, row.bound_usd, run_id=row.run_id, ttl=row.ttl)
            self.ledger.record_call(session, idempotency_key=row.key, run_id=row.run_id, status="held",
                                    bound_usd=row.bound_usd, price_version="pending", **row.columns)

    def settle(self, settlement: Settlement, on_crossed: OnCrossed,
               remember: Callable[[Session], None] | None) -> int | None:
        """Charge the settlement, price the row, queue its events (and ``remember`` the answer); the row's id."""
        with self.ledger.transaction() as session:
            return self._settle_in(session, settlement, on_crossed, remember)

    def _settle_in(self, session: Session, s: Settlement, on_crossed: OnCrossed,
                   remember: Callable[[Session], None] | None) -> int | None:
        crossed = self.budgets.settle(session, s.key, s.cost_usd)  # budgets first: their locks come first
        call_id = self.ledger.settle_call(session, s.key, status=s.status, usage=s.usage, cost_usd=s.cost_usd,
                                          price_version=s.price_version, latency_ms=s.latency_ms)
        for event in s.events:
            self.record_event(session, event)
        on_crossed(session, crossed)
        if remember is not None:
            remember(session)
        return call_id


class PostgresAttemptWrites(AttemptWrites):
    """The common case of each write as one Postgres statement; the rest as :class:`AttemptWrites` does it."""

    def hold(self, row: HeldRow, ensure_run: Callable[[Session], None] | None) -> None:
        if ensure_run is not None:  # the run's first call here: its run row goes in the same transaction
            return super().hold(row, ensure_run)
        now = utcnow()
        verdict: Sequence[Any] = self.ledger.statement(HOLD, {
            "scopes": [r.scope for r in row.refs], "keys": [r.key for r in row.refs], "amount": row.bound_usd,
            "key": row.key, "run_id": row.run_id, "now": now, "expires_at": now + row.ttl,
            **_call_columns(row.columns),
        })[0]
        ok, unopened, *refusing = verdict
        if ok:
            return None
        if unopened:  # a day or month budget's first charge of the period: its counter is created
            return super().hold(row, None)
        scope, scope_key, limit, spent, held, on_breach = refusing
        raise BudgetExceeded(scope=scope, scope_key=scope_key, limit_usd=limit, spent_usd=spent, held_usd=held,
                             requested_usd=row.bound_usd, on_breach=on_breach)

    def settle(self, settlement: Settlement, on_crossed: OnCrossed,
               remember: Callable[[Session], None] | None) -> int | None:
        s, now = settlement, utcnow()
        params = {
            "key": s.key, "cost": s.cost_usd, "status": s.status, "price_version": s.price_version,
            "latency_ms": s.latency_ms, "now": now, "input_tokens": s.usage.input_tokens,
            "cached_input_tokens": s.usage.cached_input_tokens, "cache_write_tokens": s.usage.cache_write_tokens,
            "output_tokens": s.usage.output_tokens, "reasoning_tokens": s.usage.reasoning_tokens,
            **outbox_params(self.record_event, s.events),
        }
        if remember is None:
            charged: Sequence[Any] = self.ledger.statement(settle_statement(len(s.events)), params)
            if not charged[0][0]:
                return super().settle(settlement, on_crossed, None)
        else:
            with self.ledger.transaction() as session:  # the answer is remembered with its settlement
                charged = session.connection().exec_driver_sql(settle_statement(len(s.events)), params).all()
                if not charged[0][0]:
                    return self._settle_in(session, settlement, on_crossed, remember)
                remember(session)
        self._alert(charged, on_crossed)
        call_id: int | None = charged[0][1]
        return call_id

    def _alert(self, charged: Sequence[Any], on_crossed: OnCrossed) -> None:
        """Alerts the settlement made due, each sent once: claimed under the budget's lock in a short
        transaction of their own (rare: a threshold is crossed once). Had the process died in between,
        the next settlement on the budget finds the alert still due and sends it."""
        due = [budget_id for _, _, budget_id, limit, spent, sent in charged
               if budget_id is not None and self.budgets.alerts_due(limit, spent, sent)]
        if due:
            with self.ledger.transaction() as session:
                on_crossed(session, self.budgets.claim_alerts(session, due))


CALL_COLUMNS = ("step_key", "asset_key", "parent_call_id", "provider", "model", "attempt", "max_output_tokens",
                "requested_max_tokens", "cache_key", "tags")


def _call_columns(columns: dict[str, Any]) -> dict[str, Any]:
    values = {c: columns.get(c) for c in CALL_COLUMNS}
    values["tags"] = json.dumps(values["tags"] or {})
    return values


HOLD = """
WITH wanted AS (
    SELECT * FROM unnest(%(scopes)s::text[], %(keys)s::text[]) AS w(scope, scope_key)
), locked AS (
    SELECT b.id, b.scope, b.scope_key, b.limit_usd, b.spent_usd, b.held_usd, b.on_breach
    FROM budgets b JOIN wanted w ON b.scope = w.scope AND b.scope_key = w.scope_key
    ORDER BY b.id FOR UPDATE OF b
), unopened AS (
    SELECT FROM wanted w JOIN budgets t ON t.scope = w.scope AND t.scope_key = '*'
    WHERE NOT EXISTS (SELECT FROM locked l WHERE l.scope = w.scope AND l.scope_key = w.scope_key)
), refusing AS (
    SELECT * FROM locked WHERE spent_usd + held_usd + %(amount)s > limit_usd ORDER BY id LIMIT 1
), replay AS (  -- this very statement committed before (its connection died before the answer came)
    SELECT FROM llm_calls WHERE idempotency_key = %(key)s
), verdict AS (
    SELECT NOT EXISTS (SELECT FROM replay) AND NOT EXISTS (SELECT FROM unopened)
        AND NOT EXISTS (SELECT FROM refusing) AS ok
), held AS (
    UPDATE budgets b SET held_usd = b.held_usd + %(amount)s, updated_at = %(now)s
    FROM locked l, verdict v WHERE b.id = l.id AND v.ok
    RETURNING b.id
), holds AS (
    INSERT INTO budget_holds (budget_id, call_key, run_id, amount_usd, status, expires_at, created_at)
    SELECT id, %(key)s, %(run_id)s, %(amount)s, 'held', %(expires_at)s, %(now)s FROM held
), call AS (
    INSERT INTO llm_calls (idempotency_key, run_id, step_key, asset_key, parent_call_id, provider, model, status,
        attempt, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_usd,
        saved_usd, bound_usd, max_output_tokens, requested_max_tokens, price_version, cache_key, tags, created_at)
    SELECT %(key)s, %(run_id)s, %(step_key)s, %(asset_key)s, %(parent_call_id)s, %(provider)s, %(model)s, 'held',
        %(attempt)s, 0, 0, 0, 0, 0, 0, 0, %(amount)s, %(max_output_tokens)s, %(requested_max_tokens)s, 'pending',
        %(cache_key)s, %(tags)s::json, %(now)s
    FROM verdict WHERE ok
    ON CONFLICT (idempotency_key) DO NOTHING
)
SELECT v.ok OR EXISTS (SELECT FROM replay), EXISTS (SELECT FROM unopened),
    r.scope, r.scope_key, r.limit_usd, r.spent_usd, r.held_usd, r.on_breach
FROM verdict v LEFT JOIN refusing r ON true
"""
"""Hold ``amount`` on every budget of the call's scopes (all or nothing) and insert its ``held`` row.
Returns (held, now or by an earlier run of the statement?; a period counter missing?; the first
refusing budget's scope, key, limit, spent, held and on_breach)."""

@functools.cache
def settle_statement(events: int) -> str:
    """Turn the call's holds into spend of ``cost``, price its row and queue its ``events`` events, if its
    holds were still ``held`` (or it had none). Returns one row per budget charged: (done?, call id,
    budget id, limit, spent, alerts sent); ``done`` false means nothing was written (the holds were
    closed before)."""
    return """
WITH locked AS (
    SELECT id FROM budgets WHERE id IN (SELECT budget_id FROM budget_holds WHERE call_key = %(key)s)
    ORDER BY id FOR UPDATE
), claimed AS (
    UPDATE budget_holds h SET status = 'settled'
    WHERE h.call_key = %(key)s AND h.status = 'held' AND h.budget_id IN (SELECT id FROM locked)
    RETURNING h.budget_id, h.amount_usd
), charged AS (
    UPDATE budgets b SET spent_usd = b.spent_usd + %(cost)s, held_usd = b.held_usd - c.amount_usd,
        updated_at = %(now)s
    FROM claimed c WHERE b.id = c.budget_id
    RETURNING b.id, b.limit_usd, b.spent_usd, b.alerts_sent
), verdict AS (
    SELECT EXISTS (SELECT FROM claimed) OR NOT EXISTS (SELECT FROM budget_holds WHERE call_key = %(key)s) AS ok
), call AS (
    UPDATE llm_calls SET status = %(status)s, input_tokens = %(input_tokens)s,
        cached_input_tokens = %(cached_input_tokens)s, cache_write_tokens = %(cache_write_tokens)s,
        output_tokens = %(output_tokens)s, reasoning_tokens = %(reasoning_tokens)s, cost_usd = %(cost)s,
        price_version = %(price_version)s, latency_ms = %(latency_ms)s, error = NULL
    FROM verdict v WHERE idempotency_key = %(key)s AND v.ok
    RETURNING llm_calls.id
), events AS (
    """ + outbox_insert("(SELECT ok FROM verdict)", events) + """
)
SELECT v.ok, (SELECT id FROM call), c.id, c.limit_usd, c.spent_usd, c.alerts_sent
FROM verdict v LEFT JOIN charged c ON true
"""

