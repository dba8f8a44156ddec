"""Alembic migrations shipped inside the package, driven programmatically (``wflo db upgrade``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import alembic
import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event, inspect

from wflo_core.config import default_cache_dir, keep_cached
from wflo_core.ledger.engine import make_engine

_HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the ledger to ``revision``. A new embedded (SQLite) ledger is built straight at the head
    from the models and stamped (Alembic's recipe for a database built from scratch): replaying every
    migration, table copies included, cost seconds on each fresh ``WFLO_HOME``."""
    if url.startswith("sqlite"):
        engine = make_engine(url)  # creates the parent directory of the SQLite file
        try:
            if revision == "head" and _create_at_head_if_empty(engine, alembic_config(url)):
                return
        finally:
            engine.dispose()
    command.upgrade(alembic_config(url), revision)


def _create_at_head_if_empty(engine: Engine, config: Config) -> bool:
    """Create every table and stamp the head if the database has no table yet; whether it did. One
    transaction (``BEGIN IMMEDIATE``), so concurrent first steps create it once.

    SQLAlchemy generates its DDL compilers on first use, a fifth of a second in each process that
    creates a ledger; so the statements creating and stamping it are kept in the cache folder
    (keyed by every ledger source file and the SQLAlchemy and Alembic versions) and replayed
    as they are. A cache that cannot be read or replayed is ignored: the transaction rolls back and
    the ledger is created the usual way."""
    cache = default_cache_dir() / f"sqlite-ledger-{_schema_key()}.json"
    with contextlib.suppress(OSError, ValueError, TypeError, sqlalchemy.exc.SQLAlchemyError):
        statements = json.loads(cache.read_text())
        with engine.begin() as connection:
            if inspect(connection).get_table_names():
                return False
            for statement, parameters in statements:
                connection.exec_driver_sql(str(statement), tuple(parameters))
            return True
    with engine.begin() as connection:
        if inspect(connection).get_table_names():
            return False
        statements = _create_and_stamp(connection, config)
    if statements is not None:
        keep_cached(cache, statements)
    return True


def _create_and_stamp(connection: Connection, config: Config) -> list[tuple[str, list[Any]]] | None:
    """Create every table and stamp the head; the statements that changed the database, or ``None``
    if one had parameters that are not a plain sequence (they could not be replayed as recorded)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from wflo_core.ledger.models import Base

    executed: list[tuple[str, list[Any]]] = []
    replayable = True

    def record(_conn: Connection, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        nonlocal replayable
        if statement.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            return
        if not isinstance(parameters, tuple | list) or not all(
            isinstance(value, str | int | None) for value in parameters
        ):
            replayable = False
        executed.append((statement, list(parameters or ())))

    event.listen(connection, "before_cursor_execute", record)
    try:
        Base.metadata.create_all(connection)
        MigrationContext.configure(connection).stamp(ScriptDirectory.from_config(config), "head")
    finally:
        event.remove(connection, "before_cursor_execute", record)
    return executed if replayable else None


def _schema_key() -> str:
    digest = hashlib.sha256(f"{sqlalchemy.__version__} {alembic.__version__}".encode())
    for path in sorted(_HERE.parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def heads(url: str = "sqlite://") -> list[str]:
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config(url)).get_heads())
