"""The hot path's single statements on real Postgres: a lost connection is retried, and a replay changes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import func, select

from wflo_core.budgets import BudgetBook, CallScope
from wflo_core.calls import Usage
from wflo_core.events.outbox import DEFAULT_RECORDER
from wflo_core.events.schemas import LLMCallSettled
from wflo_core.ledger.models import Budget, BudgetHold, LLMCall, OutboxEvent
from wflo_core.ledger.store import Ledger
from wflo_core.llm.attempt_writes import HeldRow, PostgresAttemptWrites, Settlement

pytestmark = pytest.mark.integration

BOUND, COST = Decimal("0.01"), Decimal("0.004")
SCOPE = CallScope(run_id="r", workflow="wf", step_key="s")


@pytest.fixture
def ledger(postgres_ledger: Ledger) -> Ledger:
    with postgres_ledger.transaction() as s:
        BudgetBook(postgres_ledger).set_limit(s, "run", "r", Decimal("1"))
        postgres_ledger.ensure_run(s, "r", "wf")
    return postgres_ledger


def _writes(ledger: Ledger) -> PostgresAttemptWrites:
    return PostgresAttemptWrites(ledger, BudgetBook(ledger), DEFAULT_RECORDER)


def _held(key: str) -> HeldRow:
    return HeldRow(key, "r", SCOPE.refs(), BOUND, timedelta(minutes=5),
                   {"step_key": "s", "provider": "openai", "model": "gpt-4o-mini", "attempt": 1, "tags": {}})


def _settlement(key: str) -> Settlement:
    event = LLMCallSettled(run_id="r", step_key="s", provider="openai", model="gpt-4o-mini", input_tokens=10,
                           output_tokens=5, cost_usd=COST, price_version="t", idempotency_key=key, attempt=1,
                           status="settled", bound_usd=BOUND)
    return Settlement(key, "settled", Usage(input_tokens=10, output_tokens=5), COST, "t", 3, [event])


def test_a_statement_whose_connection_died_is_sent_again_on_a_fresh_one(ledger: Ledger) -> None:
    (pid,), = ledger.statement("SELECT pg_backend_pid()", {})
    with psycopg.connect(ledger.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    (new_pid,), = ledger.statement("SELECT pg_backend_pid()", {})  # the dead pooled connection is replaced
    assert new_pid != pid


def test_a_replayed_hold_and_settlement_change_nothing(ledger: Ledger) -> None:
    """What a retry after a lost answer sends again: the statement had committed the first time."""
    writes = _writes(ledger)
    for _ in range(2):
        writes.hold(_held("k1"), None)
    with ledger.transaction() as s:
        assert s.scalar(select(Budget.held_usd).where(Budget.scope == "run")) == BOUND
        assert s.scalar(select(func.count()).select_from(BudgetHold)) == 1
        assert s.scalar(select(func.count()).select_from(LLMCall)) == 1
    for _ in range(2):
        writes.settle(_settlement("k1"), lambda session, crossed: None, None)
    with ledger.transaction() as s:
        budget = s.scalar(select(Budget).where(Budget.scope == "run"))
        assert budget is not None and (budget.spent_usd, budget.held_usd) == (COST, 0)
        assert s.scalar(select(LLMCall.status)) == "settled"
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 1
