"""Soak the money path: N property trials (default 200) of 6 processes × 4 threads on a throwaway Postgres.

    .venv/bin/python scripts/soak_money.py [TRIALS]

Prints, per 20 trials, the ledger rows by status and any invariant violation (there must be none).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import llm_server  # noqa: E402
from tests.money_trials import Trials  # noqa: E402
from tests.services import scratch_database, start_postgres  # noqa: E402
from wflo_core.ledger.migrations import upgrade  # noqa: E402


def main(trials: int) -> int:
    postgres, server = start_postgres(), llm_server.start_subprocess()
    failures, statuses = 0, Counter[str]()
    try:
        with scratch_database(postgres.url, "soak") as url:
            upgrade(url)
            runner = Trials(url, server)
            try:
                for n in range(trials):
                    report = runner.run(n)
                    statuses.update(report.rows_by_status)
                    if report.violations:
                        failures += 1
                        print(f"trial {n}: VIOLATION {report.violations}", flush=True)
                    if (n + 1) % 20 == 0:
                        print(f"{n + 1} trials, {failures} with violations, rows {dict(statuses)}", flush=True)
            finally:
                runner.close()
    finally:
        server.stop()
        postgres.stop()
    print(f"RESULT | money soak | {trials} trials | {failures} violations | rows {dict(statuses)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
