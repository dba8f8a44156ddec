"""One relay at a time per ledger, so two relays never interleave (and reorder) a run's events.

Postgres: a session-level advisory lock (released if the process dies). SQLite file: ``flock`` on
a file next to the database. In-memory SQLite: a lock in this process.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from wflo_core.ledger.store import Ledger

RELAY_LOCK_KEY = 0x77666C6F_72656C  # "wflorel": the advisory lock id of the outbox relay
_process_lock = threading.Lock()


@contextmanager
def relay_lease(ledger: Ledger) -> Iterator[bool]:
    """Yield True if this caller is now the only relay; False if another relay holds the lease."""
    if ledger.dialect == "postgresql":
        with ledger.engine.connect() as conn:
            acquired = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": RELAY_LOCK_KEY}))
            conn.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RELAY_LOCK_KEY})
                    conn.commit()
        return
    database = ledger.engine.url.database
    if not database or database == ":memory:":
        acquired = _process_lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                _process_lock.release()
        return
    fd = os.open(f"{database}.relay.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
