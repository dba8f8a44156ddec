"""The money-path invariant under concurrency: 20 trials of 6 processes × 4 threads on real Postgres.

See ``tests/money_trials.py`` for the mix of operations; ``scripts/soak_money.py`` runs the long soak.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.money_trials import Trials
from wflo_core.ledger.migrations import upgrade

pytestmark = pytest.mark.integration

TRIALS = 20


def test_every_budget_equals_its_ledger_and_nothing_is_left_held(fresh_postgres_url: str, llm_server_process) -> None:
    upgrade(fresh_postgres_url)
    trials = Trials(fresh_postgres_url, llm_server_process)
    statuses: Counter[str] = Counter()
    try:
        for n in range(TRIALS):
            report = trials.run(n)
            assert report.violations == [], f"trial {n}: {report.violations}"
            statuses.update(report.rows_by_status)
    finally:
        trials.close()
    # the mix really exercised every way a call can end
    assert {"settled", "estimated", "failed", "cache_hit"} <= set(statuses), statuses
