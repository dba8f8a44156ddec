"""The ledger as one object: an engine, transactions that translate constraint errors, and lifecycle writes.

Every write is idempotent (runs, steps and calls are keyed by natural ids), so a retried step or a
re-delivered hook never double counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wflo_core.calls import Usage
from wflo_core.errors import LedgerError, first_line
from wflo_core.ledger.engine import make_engine, make_session_factory, shared_engine
from wflo_core.ledger.models import Base, LLMCall, Run, Step, Workflow, utcnow

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

TERMINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "canceled", "rolled_back"})


def _constraint_message(err: IntegrityError | Exception) -> str:
    cause: BaseException = (err.orig if isinstance(err, IntegrityError) else None) or err
    name = re.search(r'constraint "([^"]+)"', str(cause))
    if name:
        return f"ledger constraint {name.group(1)} violated: {first_line(cause)}"
    return f"ledger constraint violated: {first_line(cause)}"


class Ledger:
    """Owns the engine; hands out transactions. Build one per process (a resource's setup).

    ``with Ledger(url) as ledger:`` (or ``open_ledger(settings)``) disposes of the engine on exit.
    """

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self._shared = engine is None and not url.startswith("sqlite")
        """A server ledger's engines are the process's (:func:`shared_engine`); a SQLite file's, this one's."""
        self.engine = engine or (shared_engine(url) if self._shared else make_engine(url))
        self._factory = make_session_factory(self.engine)
        self._statements: Engine | None = None
        self.recorded_runs: set[str] = set()
        """Runs a committed transaction of this process recorded or found (their row needs no insert)."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Commit on success; on a constraint violation roll back and raise one ``LedgerError`` line."""
        try:
            with self._factory() as session, session.begin():
                yield session
        except IntegrityError as err:
            raise LedgerError(_constraint_message(err)) from err

    @contextmanager
    def driver_transaction(self) -> Iterator[Any]:
        """A ``sqlite3`` cursor in ``BEGIN IMMEDIATE`` on a pooled connection, committed on success and
        rolled back on any error. For the embedded ledger's hot path: a few fixed statements without
        an ORM session's per-statement work; values in the column types' storage form."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        except self.engine.dialect.loaded_dbapi.IntegrityError as err:
            raise LedgerError(_constraint_message(err)) from err
        finally:
            connection.close()

    def statement(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one SQL statement as its own transaction; its rows. For the hot path's writes on Postgres.

        Straight on a pooled driver connection in autocommit, without pre-ping: one round trip, atomic
        as every statement is, and none of the per-statement work a ``Connection`` does. A statement
        whose connection turns out dead (the server restarted) is sent once more on a fresh one, so it
        must be idempotent: a replay of a statement that did commit must change nothing.
        """
        engine = self._statement_engine()
        dbapi = engine.dialect.loaded_dbapi
        for tries in (1, 2):
            connection = engine.raw_connection()
            try:
                driver: Any = connection.driver_connection  # psycopg: binary parameters need no escaping
                return list(driver.execute(sql, params, binary=True).fetchall())
            except dbapi.IntegrityError as err:
                raise LedgerError(_constraint_message(err)) from err
            except dbapi.Error as err:
                if tries == 2 or not engine.dialect.is_disconnect(err, connection.dbapi_connection, None):
                    raise
                connection.invalidate(err)
            finally:
                connection.close()
        raise AssertionError("unreachable")

    def _statement_engine(self) -> Engine:
        if self._statements is None:
            self._statements = (shared_engine(self.url, statements=True) if self._shared
                                else make_engine(self.url, statements=True))
        return self._statements

    def close(self) -> None:
        """Dispose of this ledger's own engines (a server ledger's stay with the process for its next run)."""
        if self._shared:
            return
        self.engine.dispose()
        if self._statements is not None:
            self._statements.dispose()

    def upsert_insert(self, model: type) -> PgInsert | SqliteInsert:
        """``INSERT`` with ``ON CONFLICT`` support for this dialect (imported on first use: the
        Postgres dialect module costs a tenth of a second that a SQLite-only CLI command need not pay)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(model)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ idempotent lifecycle writes

    def insert_ignore(self, session: Session, model: type[Base], values: dict[str, Any], keys: list[str]) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING; True if the row is new."""
        stmt = self.upsert_insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
        return session.execute(stmt.returning(*model.__table__.primary_key)).first() is not None

    def ensure_run(
        self,
        session: Session,
        run_id: str,
        workflow: str,
        *,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> bool:
        """Record the run (and its workflow) if it is new; True if this call created it."""
        if session.scalar(select(Run.id).where(Run.id == run_id)) is not None:
            return False  # the common case: one cheap read instead of three statements
        self.insert_ignore(session, Workflow, {"name": workflow, "created_at": utcnow()}, ["name"])
        workflow_id = session.scalar(select(Workflow.id).where(Workflow.name == workflow))
        created = self.insert_ignore(
            session,
            Run,
            {"id": run_id, "workflow_id": workflow_id, "status": "running", "tags": tags or {},
             "parent_run_id": parent_run_id, "started_at": utcnow()},
            ["id"],
        )
        return created

    def open_step(
        self, session: Session, run_id: str, step_key: str, attempt: int = 0, *,
        asset_key: str | None = None, tags: dict[str, str] | None = None,
    ) -> None:
        """Record that this attempt of the step started (once, however often it is called)."""
        self.insert_ignore(
            session,
            Step,
            {"run_id": run_id, "step_key": step_key, "attempt": attempt, "asset_key": asset_key,
             "status": "running", "tags": tags or {}, "started_at": utcnow()},
            ["run_id", "step_key", "attempt"],
        )

    def finish_latest_attempt(self, session: Session, run_id: str, step_key: str, status: str,
                              error: str | None = None) -> tuple[int, str | None] | None:
        """Close the step's latest attempt in one statement; its (attempt, asset key), None if unknown."""
        latest = (select(Step.id).where(Step.run_id == run_id, Step.step_key == step_key)
                  .order_by(Step.attempt.desc()).limit(1).scalar_subquery())
        row = session.execute(update(Step).where(Step.id == latest)
                              .values(status=status, error=error, ended_at=utcnow())
                              .returning(Step.attempt, Step.asset_key)).first()
        return None if row is None else (row[0], row[1])

    def close_earlier_attempts(self, session: Session, run_id: str, step_key: str, attempt: int) -> list[Step]:
        """Mark attempts before ``attempt`` that never finished as retried (failure hooks skip them)."""
        earlier = list(session.scalars(select(Step).where(
            Step.run_id == run_id, Step.step_key == step_key, Step.attempt < attempt, Step.status == "running")))
        for step in earlier:
            self.finish_step(session, step, "retried", step.error)
        return earlier

    def finish_step(self, session: Session, step: Step, status: str, error: str | None = None) -> None:
        step.status = status
        step.error = error
        step.ended_at = utcnow()

    def finish_run(self, session: Session, run_id: str, status: str, reason: str | None = None,
                   *, ended_at: datetime | None = None) -> bool:
        """Close a run out; returns False if it was already in a terminal state (first writer wins)."""
        run = session.get(Run, run_id, with_for_update=self.dialect == "postgresql")
        if run is None or run.status in TERMINAL_RUN_STATUSES:
            return False
        run.status = status
        run.status_reason = reason
        run.ended_at = ended_at or utcnow()
        return True

    def settle_call(self, session: Session, key: str, *, status: str, usage: Usage, cost_usd: Decimal,
                    price_version: str, latency_ms: int | None = None, error: str | None = None) -> int | None:
        """Close an attempt's row with what it cost (``settled``, ``over_bound`` or ``estimated``); its id."""
        return session.scalar(update(LLMCall).where(LLMCall.idempotency_key == key).values(
            status=status, input_tokens=usage.input_tokens, cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens, cost_usd=cost_usd, price_version=price_version,
            latency_ms=latency_ms, error=error).returning(LLMCall.id))

    def fail_call(self, session: Session, key: str, *, error: str) -> int | None:
        """Close an attempt the provider did not bill: ``failed`` at $0; its id."""
        return session.scalar(update(LLMCall).where(LLMCall.idempotency_key == key).values(
            status="failed", cost_usd=Decimal(0), price_version="unbilled", error=error).returning(LLMCall.id))

    def record_call(self, session: Session, **values: Any) -> int | None:
        """Insert one ``llm_calls`` row; its id, or None if its idempotency key was already recorded."""
        values.setdefault("created_at", utcnow())
        return session.scalar(
            self.upsert_insert(LLMCall).values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(LLMCall.id)
        )
