"""An attempt's hold and settlement on the embedded SQLite ledger: a few fixed statements on the driver.

SQLite has one writer: ``BEGIN IMMEDIATE`` takes the database's write lock, so reading the budgets
and then writing them is as atomic as Postgres's ``FOR UPDATE`` (and there is no lock order to
keep). Building and compiling ORM statements cost ~10 ms an attempt here, against well under one
for the statements themselves (``sqlite3`` caches their plans). What these do not handle — a run's
first call, a period budget's first charge, a settlement whose hold was closed before, one that
crosses an alert threshold or remembers its answer — goes to the ORM path of :class:`AttemptWrites`,
as on Postgres, having written nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.orm import Session

from wflo_core.budgets import BudgetBook
from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY
from wflo_core.errors import BudgetExceeded
from wflo_core.events.outbox import EventRecorder
from wflo_core.ledger.models import utcnow
from wflo_core.ledger.store import Ledger
from wflo_core.ledger.types import Money
from wflo_core.llm.attempt_writes import CALL_COLUMNS, AttemptWrites, HeldRow, OnCrossed, Settlement

_INSERT_CALL = (
    "INSERT INTO llm_calls (idempotency_key, run_id, status, bound_usd, price_version, attempt, input_tokens, "
    "cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, saved_usd, created_at, "
    f"{', '.join(CALL_COLUMNS)}) VALUES (?, ?, 'held', ?, 'pending', ?, 0, 0, 0, 0, 0, 0, 0, ?, "
    f"{', '.join('?' * len(CALL_COLUMNS))}) ON CONFLICT (idempotency_key) DO NOTHING"
)
_SETTLE_CALL = (
    "UPDATE llm_calls SET status = ?, input_tokens = ?, cached_input_tokens = ?, cache_write_tokens = ?, "
    "output_tokens = ?, reasoning_tokens = ?, cost_usd = ?, price_version = ?, latency_ms = ?, error = NULL "
    "WHERE idempotency_key = ? RETURNING id"
)
_INSERT_EVENT = (
    "INSERT INTO outbox (event_id, event_type, topic, key, payload, created_at, attempts) "
    "VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (event_id) DO NOTHING"
)


def _in(ids: Sequence[Any]) -> str:
    return f"({', '.join('?' * len(ids))})"


class SqliteAttemptWrites(AttemptWrites):
    """The common case of each write as a few driver statements in one SQLite transaction."""

    def __init__(self, ledger: Ledger, budgets: BudgetBook, record_event: EventRecorder) -> None:
        super().__init__(ledger, budgets, record_event)
        dialect, money = ledger.engine.dialect, Money()
        stamp = DateTime(timezone=True).bind_processor(dialect)
        # the column types' own conversions, so rows read back exactly as the ORM writes them
        self._units: Callable[[Decimal], int] = lambda usd: money.process_bind_param(usd, dialect)
        self._usd: Callable[[int], Decimal] = lambda units: money.process_result_value(units, dialect)  # type: ignore[assignment,return-value]
        self._stamp: Callable[[datetime], str] = stamp if stamp is not None else str

    def hold(self, row: HeldRow, ensure_run: Callable[[Session], None] | None) -> None:
        if ensure_run is not None:  # the run's first call here: its run row goes in the same transaction
            return super().hold(row, ensure_run)
        with self.ledger.driver_transaction() as db:
            handled = self._hold(db, row)
        if not handled:  # a day or month budget's first charge of the period: its counter is created
            super().hold(row, None)

    def _hold(self, db: Any, row: HeldRow) -> bool:
        keys = sorted({r.key for r in row.refs} | {PERIOD_TEMPLATE_KEY})
        budgets = db.execute("SELECT id, scope, scope_key, limit_usd, spent_usd, held_usd, on_breach FROM budgets "
                             f"WHERE scope_key IN {_in(keys)} ORDER BY id", keys).fetchall()
        wanted = {(r.scope, r.key) for r in row.refs}
        have = {(b[1], b[2]) for b in budgets}
        templates = {b[1] for b in budgets if b[2] == PERIOD_TEMPLATE_KEY}
        if any(scope in templates for scope, key in wanted - have):
            return False
        amount = self._units(row.bound_usd)
        applicable = [b for b in budgets if (b[1], b[2]) in wanted]
        full = next((b for b in applicable if b[4] + b[5] + amount > b[3]), None)
        if full is not None:
            _, scope, scope_key, limit, spent, held, on_breach = full
            raise BudgetExceeded(scope=scope, scope_key=scope_key, limit_usd=self._usd(limit),
                                 spent_usd=self._usd(spent), held_usd=self._usd(held),
                                 requested_usd=row.bound_usd, on_breach=on_breach)
        now = utcnow()
        stamp, ids = self._stamp(now), [b[0] for b in applicable]
        if ids:
            db.execute(f"UPDATE budgets SET held_usd = held_usd + ?, updated_at = ? WHERE id IN {_in(ids)}",
                       [amount, stamp, *ids])
            expires = self._stamp(now + row.ttl)
            db.executemany("INSERT INTO budget_holds (budget_id, call_key, run_id, amount_usd, status, expires_at, "
                           "created_at) VALUES (?, ?, ?, ?, 'held', ?, ?)",
                           [(i, row.key, row.run_id, amount, expires, stamp) for i in ids])
        columns = {c: row.columns.get(c) for c in CALL_COLUMNS}
        columns["tags"] = json.dumps(columns["tags"] or {})
        db.execute(_INSERT_CALL, [row.key, row.run_id, amount, row.columns.get("attempt", 1), stamp,
                                  *columns.values()])
        return True

    def settle(self, settlement: Settlement, on_crossed: OnCrossed,
               remember: Callable[[Session], None] | None) -> int | None:
        if remember is not None:  # the answer is remembered with its settlement, in the ORM transaction
            return super().settle(settlement, on_crossed, remember)
        with self.ledger.driver_transaction() as db:
            handled, call_id = self._settle(db, settlement)
        if not handled:
            return super().settle(settlement, on_crossed, None)
        return call_id

    def _settle(self, db: Any, s: Settlement) -> tuple[bool, int | None]:
        holds = db.execute("SELECT budget_id, amount_usd, status FROM budget_holds WHERE call_key = ? "
                           "ORDER BY budget_id", [s.key]).fetchall()
        if any(status != "held" for _, _, status in holds):
            return False, None  # closed before the answer came (estimated or released)
        cost, now = self._units(s.cost_usd), self._stamp(utcnow())
        if holds:
            ids = [budget_id for budget_id, _, _ in holds]
            if s.cost_usd > 0:
                budgets = db.execute(f"SELECT limit_usd, spent_usd, alerts_sent FROM budgets WHERE id IN {_in(ids)}",
                                     ids).fetchall()
                if any(self.budgets.alerts_due(self._usd(limit), self._usd(spent + cost), json.loads(sent))
                       for limit, spent, sent in budgets):
                    return False, None  # a threshold crossed: its alert is claimed with the charge
            db.execute("UPDATE budget_holds SET status = 'settled' WHERE call_key = ? AND status = 'held'", [s.key])
            db.execute(f"UPDATE budgets SET spent_usd = spent_usd + ?, held_usd = held_usd - ?, updated_at = ? "
                       f"WHERE id IN {_in(ids)}", [cost, holds[0][1], now, *ids])
        u = s.usage
        call = db.execute(_SETTLE_CALL, [s.status, u.input_tokens, u.cached_input_tokens, u.cache_write_tokens,
                                         u.output_tokens, u.reasoning_tokens, cost, s.price_version, s.latency_ms,
                                         s.key]).fetchone()
        rows = [self.record_event.row(event) for event in s.events]
        db.executemany(_INSERT_EVENT, [(r["event_id"], r["event_type"], r["topic"], r["key"], r["payload"],
                                        self._stamp(r["created_at"])) for r in rows])
        return True, None if call is None else call[0]
