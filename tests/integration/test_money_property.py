"""The money-path invariant under concurrency: trials of 6 processes × 4 threads on real Postgres and on
the embedded SQLite ledger (its hold and settle statements are its own).

See ``tests/money_trials.py`` for the mix of operations; ``scripts/soak_money.py`` runs the long soak.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.money_trials import Trials
from wflo_core.ledger.migrations import upgrade

pytestmark = pytest.mark.integration

TRIALS = 20
SQLITE_TRIALS = 6


def test_every_budget_equals_its_ledger_and_nothing_is_left_held(fresh_postgres_url: str, llm_server_process) -> None:
    run_trials(fresh_postgres_url, llm_server_process, TRIALS)


def test_the_sqlite_ledger_keeps_the_same_invariant(tmp_path, llm_server_process) -> None:
    run_trials(f"sqlite:///{tmp_path}/ledger.db", llm_server_process, SQLITE_TRIALS)


def run_trials(url: str, llm_server_process, count: int) -> None:
    upgrade(url)
    trials = Trials(url, llm_server_process)
    statuses: Counter[str] = Counter()
    try:
        for n in range(count):
            report = trials.run(n)
            assert report.violations == [], f"trial {n}: {report.violations}"
            statuses.update(report.rows_by_status)
    finally:
        trials.close()
    # the mix really exercised every way a call can end
    assert {"settled", "estimated", "failed", "cache_hit"} <= set(statuses), statuses
