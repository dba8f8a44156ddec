"""The embedded ledger (SQLite) keeps sums of money exact (the ledger contract, on both backends, is in
``tests/integration/test_ledger_contract.py``)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import create_engine, func, inspect, select

from wflo_core.config import load_settings
from wflo_core.ledger.migrations import heads, upgrade
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


def _schema(url: str) -> dict[str, object]:
    """Everything about the tables but their column order."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        return {table: (
            sorted((c["name"], str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(table)),
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            sorted((f["referred_table"], tuple(f["constrained_columns"]), f["options"].get("ondelete"))
                   for f in inspector.get_foreign_keys(table)),
            sorted((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)),
        ) for table in inspector.get_table_names()}
    finally:
        engine.dispose()


def test_a_fresh_ledger_built_at_the_head_matches_one_migrated_step_by_step(tmp_path) -> None:
    fresh, migrated = f"sqlite:///{tmp_path}/fresh.db", f"sqlite:///{tmp_path}/migrated.db"
    upgrade(fresh)
    upgrade(migrated, "0001")  # not empty any more: the rest goes through every migration
    upgrade(migrated)
    assert _schema(fresh) == _schema(migrated)
    assert _schema(fresh)["alembic_version"] and heads() == [_version(fresh)]
    upgrade(fresh)  # at the head already: nothing to do
    assert heads() == [_version(fresh)]


def _version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())
    finally:
        engine.dispose()
