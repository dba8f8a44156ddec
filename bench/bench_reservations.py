"""Budget reservations from 16 worker processes against one Postgres: holds/s, and an overshoot of exactly 0.

Each worker holds against 4 budgeted scopes, as a step's call does: its own run budget and three more,
either of its own or shared by every worker (the workflow, a ``team`` tag and the day), in which case
every hold contends for the same three row locks. A hold is wflo's hot-path statement
(``PostgresAttemptWrites.hold``: the budget rows locked in id order, checked, raised, the hold rows and
the attempt's ``held`` ledger row written, all in one statement).

1. rate: every limit is out of reach; workers hold as fast as they can for a fixed time, once with
   4 scopes of their own each (bound by CPU) and once with 3 of the 4 shared (bound by the row locks). The
   baseline, run alongside in the same way (16 processes, the same Postgres), is the least such a hold
   can cost: one raw psycopg ``UPDATE budgets SET held_usd = held_usd + x WHERE id IN (the 4 ids, locked
   in id order, as any two holds sharing budgets must lock them) AND spent + held + x <= limit`` per
   hold, no hold rows, no ledger row, no all-or-nothing check.
2. overshoot: the shared workflow budget is set to fit exactly ``FIT`` holds; the workers hold until it
   refuses them. Overshoot = held − limit on every budget must be 0 (never above), the budget must end
   exactly full, and the ledger's ``held`` rows must add up to it.

    .venv/bin/python bench/bench_reservations.py [--workers 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.result import result  # noqa: E402
from tests.services import start_postgres  # noqa: E402

AMOUNT = Decimal("0.001")
OWN = ("run", "workflow", "tag", "asset")
SHARED = ("run", "workflow", "tag", "day")
FIT = 2000
SPAWN = multiprocessing.get_context("spawn")
GOAL_PER_S = 5000
D_MAX = Decimal(10**6)


def _refs(worker: int, shared: bool):  # type: ignore[no-untyped-def]
    """The call's 4 budgeted scopes: the worker's run, and a workflow, a ``team`` tag and the day (or,
    not shared, an asset of its own instead of the day, which every worker would share, and workflow
    and team of its own). The call's other scopes have no budget."""
    from wflo_core.budgets import CallScope

    if shared:
        scope = CallScope(run_id=f"run-{worker}", workflow="bench", step_key="step", tags={"team": "bench"})
    else:
        scope = CallScope(run_id=f"run-{worker}", workflow=f"bench-{worker}", step_key="step",
                          asset_key=f"a{worker}", tags={"team": f"t{worker}"})
    return [r for r in scope.refs() if r.scope in (SHARED if shared else OWN)]


def _wflo_worker(url: str, worker: int, seconds: float, until_refused: bool, shared: bool,  # type: ignore[no-untyped-def]
                 start, counts) -> None:
    from wflo_core.budgets import BudgetBook
    from wflo_core.errors import BudgetExceeded
    from wflo_core.events.outbox import DEFAULT_RECORDER
    from wflo_core.ledger.store import Ledger
    from wflo_core.llm.attempt_writes import HeldRow, PostgresAttemptWrites

    ledger = Ledger(url)
    writes = PostgresAttemptWrites(ledger, BudgetBook(ledger), DEFAULT_RECORDER)
    refs = _refs(worker, shared)
    columns = {"step_key": "step", "provider": "openai", "model": "gpt-4o-mini", "attempt": 1, "tags": {}}
    held = 0
    start.wait()
    deadline = time.perf_counter() + seconds
    while until_refused or time.perf_counter() < deadline:
        try:
            writes.hold(HeldRow(f"{worker}:{until_refused}:{held}", f"run-{worker}", refs, AMOUNT,
                                timedelta(minutes=15), columns), None)
        except BudgetExceeded:
            if until_refused:
                break
            raise
        held += 1
    counts.put(held)
    ledger.close()


def _raw_worker(url: str, worker: int, seconds: float, ids: list[int], start, counts) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        held = 0
        start.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            conn.execute("UPDATE budgets SET held_usd = held_usd + %s WHERE id IN (SELECT id FROM budgets "
                         "WHERE id = ANY(%s) ORDER BY id FOR UPDATE) AND spent_usd + held_usd + %s <= limit_usd",
                         (AMOUNT, ids, AMOUNT))
            held += 1
        counts.put(held)


def _race(target, args_for, workers: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    start, counts = SPAWN.Barrier(workers + 1), SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args_for(w), start, counts)) for w in range(workers)]
    for p in procs:
        p.start()
    start.wait()
    began = time.perf_counter()
    total = sum(counts.get(timeout=600) for _ in procs)
    took = time.perf_counter() - began
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"a worker failed (exit {p.exitcode})"
    return total, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    pg = start_postgres()
    try:
        run(pg.url, args.workers, args.seconds)
    finally:
        pg.stop()


def run(url: str, workers: int, seconds: float) -> None:
    from sqlalchemy import func, select

    from wflo_core.budgets import BudgetBook
    from wflo_core.ledger.migrations import upgrade
    from wflo_core.ledger.models import Budget, BudgetHold, LLMCall
    from wflo_core.ledger.store import Ledger

    upgrade(url)
    ledger = Ledger(url)
    book = BudgetBook(ledger)
    refs = {(shared, w): _refs(w, shared)
            for shared in (True, False) for w in range(workers)}

    def reset(shared_limit: Decimal) -> None:
        """Every budget empty, the shared ones at ``shared_limit``, the workers' own out of reach."""
        with ledger.transaction() as s:
            s.query(BudgetHold).delete()
            s.query(LLMCall).delete()
            for (shared, w), scopes in refs.items():
                ledger.ensure_run(s, f"run-{w}", "bench")
                for ref in scopes:
                    book.set_limit(s, ref.scope, ref.key, shared_limit if shared and ref.scope != "run" else D_MAX)
            s.query(Budget).update({Budget.held_usd: 0, Budget.spent_usd: 0})

    reset(D_MAX)
    with ledger.transaction() as s:
        ids = {(b.scope, b.scope_key): b.id for b in s.scalars(select(Budget))}
    raw_ids = {key: sorted(ids[(r.scope, r.key)] for r in scopes) for key, scopes in refs.items()}
    psycopg_url = url.replace("postgresql+psycopg://", "postgresql://")
    for shared in (False, True):
        rates: dict[str, list[float]] = {"wflo": [], "raw": []}
        for _ in range(2):  # alternate, so machine noise hits both
            reset(D_MAX)
            total, took = _race(_raw_worker, lambda w, shared=shared: (psycopg_url, w, seconds, raw_ids[(shared, w)]),
                                workers)
            rates["raw"].append(total / took)
            reset(D_MAX)
            total, took = _race(_wflo_worker, lambda w, shared=shared: (url, w, seconds, False, shared), workers)
            rates["wflo"].append(total / took)
        wflo, raw = max(rates["wflo"]), max(rates["raw"])
        layout = "4 scopes, 3 shared by all" if shared else "4 scopes of its own"
        print(f"holds/s, {workers} processes x {layout}: wflo {wflo:,.0f}, raw UPDATE {raw:,.0f} (best of 2 each)")
        result(f"budget reservations, {workers} processes x {layout} (Postgres)", f"{wflo:,.0f} holds/s",
               f"raw UPDATE {raw:,.0f}/s", wflo / raw, f">= {GOAL_PER_S:,}/s", wflo >= GOAL_PER_S)

    reset(AMOUNT * FIT)
    held, _ = _race(_wflo_worker, lambda w: (url, w, seconds, True, True), workers)
    with ledger.transaction() as s:
        budgets = s.scalars(select(Budget).where(Budget.limit_usd < D_MAX)).all()
        overshoot = max(b.spent_usd + b.held_usd - b.limit_usd for b in budgets)
        rows = s.scalar(select(func.coalesce(func.sum(LLMCall.bound_usd), 0)).where(LLMCall.status == "held"))
    exact = held == FIT and all(b.held_usd == b.limit_usd == rows for b in budgets)
    print(f"overshoot: {held} holds granted for room for {FIT}; shared budgets hold "
          f"{sorted({f'{b.held_usd:f}' for b in budgets})} of {AMOUNT * FIT:f}; ledger held rows {rows:f}; "
          f"max(spent + held - limit) = {overshoot:f}")
    ledger.close()
    result(f"budget overshoot, {workers} processes racing for room for {FIT} holds",
           f"overshoot ${max(overshoot, Decimal(0)):f}", "-", None, "exactly 0, budget exactly full",
           overshoot <= 0 and exact)


if __name__ == "__main__":
    main()
