"""The embedded ledger (SQLite) keeps sums of money exact (the ledger contract, on both backends, is in
``tests/integration/test_ledger_contract.py``)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from wflo_core.config import load_settings
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import LLMCall
from wflo_core.ledger.store import Ledger


def test_sums_of_small_amounts_stay_exact_on_sqlite() -> None:
    url = load_settings().ledger_url
    upgrade(url)
    ledger = Ledger(url)
    with ledger.transaction() as s:
        ledger.ensure_run(s, "r", "wf")
        for i in range(1000):
            ledger.record_call(s, idempotency_key=f"k{i}", run_id="r", provider="openai", model="m",
                               status="settled", cost_usd=Decimal("0.0000001"), price_version="t")
    with ledger.transaction() as s:
        total = s.scalar(select(func.sum(LLMCall.cost_usd)))
    assert total == Decimal("0.0001000000")  # float addition would give 9.99999999999e-05
    ledger.close()
