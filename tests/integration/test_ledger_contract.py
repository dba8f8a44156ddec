"""The ledger contract, on both backends (embedded SQLite and real Postgres): migrations round-trip, the
schema matches the models, constraints hold and money stays exact."""

from __future__ import annotations

from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from wflo_core.config import load_settings
from wflo_core.errors import LedgerError
from wflo_core.ledger.migrations import downgrade, heads, upgrade
from wflo_core.ledger.models import Base, Budget, LLMCall
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration


def _url(raw: str) -> str:
    return load_settings(database_url=raw).ledger_url


def _schema_diff(ledger: Ledger) -> list:
    with ledger.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def test_single_head() -> None:
    assert len(heads()) == 1


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return _url(request.getfixturevalue("fresh_postgres_url"))


def test_upgrade_downgrade_upgrade_and_no_autogenerate_diff(ledger_url: str) -> None:
    url = ledger_url
    upgrade(url)
    ledger = Ledger(url)
    tables = set(inspect(ledger.engine).get_table_names())
    assert {"workflows", "runs", "steps", "llm_calls", "budgets", "budget_holds", "sandbox_runs",
            "checkpoints", "approvals", "compensations", "outbox"} <= tables
    downgrade(url, "base")
    assert set(inspect(ledger.engine).get_table_names()) == {"alembic_version"}
    upgrade(url)
    assert _schema_diff(ledger) == []
    ledger.close()


@pytest.fixture
def ledger(ledger_url: str):
    url = ledger_url
    upgrade(url)
    ledger = Ledger(url)
    with ledger.transaction() as s:
        ledger.ensure_run(s, "run-1", "research_agent")
    yield ledger
    ledger.close()


def _names(ledger: Ledger, postgres: str, sqlite: str) -> str:
    """What the one-line error names: Postgres reports the constraint's name, SQLite only its kind."""
    return postgres if ledger.dialect == "postgresql" else sqlite


def _call(key: str, run_id: str = "run-1", cost: Decimal = Decimal("0.0012345678")) -> dict:
    return {"idempotency_key": key, "run_id": run_id, "provider": "openai", "model": "gpt-4o-mini",
            "status": "settled", "input_tokens": 10, "output_tokens": 5, "cost_usd": cost,
            "price_version": "test"}


def test_money_round_trips_exactly(ledger: Ledger) -> None:
    with ledger.transaction() as s:
        assert ledger.record_call(s, **_call("k1"))
    with ledger.transaction() as s:
        assert s.scalar(select(LLMCall.cost_usd)) == Decimal("0.0012345678")


def test_duplicate_idempotency_key_is_ignored_not_double_counted(ledger: Ledger) -> None:
    with ledger.transaction() as s:
        assert ledger.record_call(s, **_call("same"))
    with ledger.transaction() as s:
        assert not ledger.record_call(s, **_call("same"))
        assert len(s.scalars(select(LLMCall)).all()) == 1


def test_duplicate_key_through_the_orm_is_a_clear_error_and_session_recovers(ledger: Ledger) -> None:
    with ledger.transaction() as s:
        s.add(LLMCall(**_call("dup")))
    with pytest.raises(LedgerError, match=_names(ledger, "uq_llm_calls_idempotency_key", "llm_calls.idempotency_key")):
        with ledger.transaction() as s:
            s.add(LLMCall(**_call("dup")))
    with ledger.transaction() as s:  # usable afterwards
        s.add(LLMCall(**_call("next")))
    with ledger.transaction() as s:
        assert {c.idempotency_key for c in s.scalars(select(LLMCall))} == {"dup", "next"}


def test_foreign_key_violation_is_a_clear_error(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match=_names(ledger, "fk_llm_calls_run_id_runs", "FOREIGN KEY")):
        with ledger.transaction() as s:
            s.add(LLMCall(**_call("orphan", run_id="no-such-run")))


@pytest.mark.parametrize("column", ["cost_usd", "saved_usd"])
def test_negative_money_is_refused(ledger: Ledger, column: str) -> None:
    with pytest.raises(LedgerError, match=f"ck_llm_calls_{column}_non_negative"):
        with ledger.transaction() as s:
            s.add(LLMCall(**{**_call("neg"), column: Decimal("-0.01")}))


def test_negative_budget_limit_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="ck_budgets_limit_usd_non_negative"):
        with ledger.transaction() as s:
            s.add(Budget(scope="run", scope_key="run-1", limit_usd=Decimal("-1")))


def test_float_money_is_refused_before_sql(ledger: Ledger) -> None:
    with pytest.raises(Exception, match="Decimal, not float"):
        with ledger.transaction() as s:
            s.add(Budget(scope="run", scope_key="run-1", limit_usd=1.5))


def test_deleting_a_run_cascades_to_its_calls(ledger: Ledger) -> None:
    from wflo_core.ledger.models import Run

    with ledger.transaction() as s:
        ledger.record_call(s, **_call("c1"))
    with ledger.transaction() as s:
        s.delete(s.get(Run, "run-1"))
    with ledger.transaction() as s:
        assert s.scalars(select(LLMCall)).all() == []
