"""Engines and sessions for the ledger, Postgres or SQLite, built from a URL (never at import)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlite3 import Connection as SQLiteConnection

    from sqlalchemy.pool import ConnectionPoolEntry


def make_engine(url: str, *, pool_size: int = 5, statements: bool = False) -> Engine:
    """An engine with the settings each backend needs for concurrent steps.

    SQLite: WAL, foreign keys on, a generous busy timeout (parallel step processes share the file).
    Postgres: pre-ping (a round trip per checkout) so a restarted server does not fail the first
    query of a step. ``statements``: the engine of ``Ledger.statement`` instead, whose connections are
    in autocommit and not pre-pinged (one round trip per statement; its caller retries a statement
    whose connection was lost).
    """
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[1] if ":///" in url else ""
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: SQLiteConnection, _record: ConnectionPoolEntry) -> None:
            dbapi_conn.isolation_level = None  # let the "begin" listener below issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Connection) -> None:
            # Take the write lock at BEGIN so read-then-write transactions never deadlock-upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=not statements, pool_size=pool_size, max_overflow=10)
    if statements:
        event.listen(engine, "connect", _autocommit)
    return engine


def _autocommit(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.autocommit = True


_shared: dict[tuple[str, bool], Engine] = {}
"""Server ledgers' engines by (URL, ``statements``)."""
_shared_lock = threading.Lock()


def shared_engine(url: str, *, statements: bool = False) -> Engine:
    """The process's engine for the server ledger at ``url``, built on first use and kept: a run after
    the first in one process (the in-process executor, a sensor's ticks, a code server) reuses its
    pooled connections instead of connecting again and repeating SQLAlchemy's first-connect queries."""
    with _shared_lock:
        engine = _shared.get((url, statements))
        if engine is None:
            engine = _shared[(url, statements)] = make_engine(url, statements=statements)
        return engine


def _forget_shared_engines() -> None:
    """In a forked child: the parent's pooled connections are the parent's; the child connects anew."""
    for engine in _shared.values():
        engine.dispose(close=False)
    _shared.clear()


os.register_at_fork(after_in_child=_forget_shared_engines)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits together on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session
