"""Reservations hold under real concurrency: many processes, one Postgres budget, never overspent."""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from wflo_core.budgets import BudgetBook, CallScope
from wflo_core.config import load_settings
from wflo_core.errors import BudgetExceeded
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import Budget
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration

LIMIT = Decimal("1.00")
UPPER_BOUND = Decimal("0.05")
WORKERS, CALLS_PER_WORKER = 4, 15  # 60 concurrent calls, worth ~3x the limit


def _reserving_worker(url: str, worker: int, start_at: float, out: mp.Queue) -> None:
    ledger = Ledger(url)
    book = BudgetBook(ledger)
    scope = CallScope(run_id="run-c", workflow="wf")
    rng = random.Random(worker)
    time.sleep(max(0.0, start_at - time.time()))
    settled = Decimal(0)
    for i in range(CALLS_PER_WORKER):
        key = f"w{worker}-c{i}"
        try:
            book.reserve(scope.refs(), key, UPPER_BOUND, run_id="run-c")
        except BudgetExceeded:
            continue
        actual = Decimal(rng.randint(20, 50)) / 1000  # the provider's real charge, <= the upper bound
        with ledger.transaction() as s:
            book.settle(s, key, actual)
        settled += actual
    ledger.close()
    out.put(settled)


def _naive_worker(url: str, worker: int, start_at: float, out: mp.Queue) -> None:
    """Read-then-check: what a post-hoc tracker does. The check and the spend are not atomic."""
    ledger = Ledger(url)
    rng = random.Random(worker)
    time.sleep(max(0.0, start_at - time.time()))
    settled = Decimal(0)
    for _ in range(CALLS_PER_WORKER):
        with ledger.transaction() as s:
            budget = s.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == "run-c"))
            allowed = budget.spent_usd + UPPER_BOUND <= budget.limit_usd
        if not allowed:
            continue
        time.sleep(0.002)  # the LLM call happens here
        actual = Decimal(rng.randint(20, 50)) / 1000
        with ledger.transaction() as s:
            s.execute(update(Budget).where(Budget.scope_key == "run-c")
                      .values(spent_usd=Budget.spent_usd + actual))
        settled += actual
    ledger.close()
    out.put(settled)


def _trial(url: str, worker_fn) -> tuple[Decimal, Decimal]:
    ledger = Ledger(url)
    with ledger.transaction() as s:
        s.execute(Budget.__table__.delete())
        BudgetBook(ledger).set_limit(s, "run", "run-c", LIMIT)
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=worker_fn, args=(url, w, start_at, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    total = sum((out.get(timeout=120) for _ in procs), Decimal(0))
    for p in procs:
        p.join(30)
    with ledger.transaction() as s:
        spent = s.scalar(select(Budget.spent_usd).where(Budget.scope_key == "run-c"))
    ledger.close()
    return total, spent


@pytest.fixture
def url(fresh_postgres_url: str) -> str:
    url = load_settings(database_url=fresh_postgres_url).ledger_url
    upgrade(url)
    return url


def test_reservations_never_overspend_across_processes(url: str) -> None:
    for _ in range(3):
        total, spent = _trial(url, _reserving_worker)
        assert spent == total  # every settled cent is on the budget, nothing lost or doubled
        assert total <= LIMIT
        assert total >= LIMIT - UPPER_BOUND * WORKERS  # and the budget was actually used up
        with Ledger(url).transaction() as s:
            assert s.scalar(select(Budget.held_usd).where(Budget.scope_key == "run-c")) == 0


def test_naive_read_then_check_overspends_under_the_same_load(url: str) -> None:
    overspent = [total for total, _ in (_trial(url, _naive_worker) for _ in range(3)) if total > LIMIT]
    assert overspent, "the naive checker stayed within the limit in every trial"
