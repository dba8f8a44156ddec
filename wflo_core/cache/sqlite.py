"""The embedded response cache and its locks in one SQLite file under ``WFLO_HOME``, shared by processes.

Each ``dagster asset materialize`` is a new process, so an in-memory cache would forget every answer
between runs and a laptop would pay twice for the same one. This file keeps them, with the same
rules as ``RedisCache`` and ``RedisLocks``: entries expire after their TTL, the entries closest to
expiry are evicted past ``max_entries``, and a lock has an owner token and an expiry, so
``SingleFlight`` works across processes. It is separate from the ledger: deleting it loses only
cached answers. WAL mode lets readers and one writer work at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Unpack

from wflo_core.cache.base import check_ttl
from wflo_core.cache.codec import decode_response, encode_response
from wflo_core.cache.locks import DistributedLock, LockOptions
from wflo_core.calls import LLMResponse

_NO_EXPIRY = 1e18  # far past any real expiry (seconds since the epoch)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at);
CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL);
"""


class _File:
    """One connection per thread to the cache file (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(_SCHEMA)

    def connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db


class SQLiteCache:
    """Encoded ``LLMResponse``s by key, with a TTL per entry and a max-entries bound."""

    def __init__(self, path: Path | str, *, max_entries: int = 10_000,
                 default_ttl_seconds: float | None = 86_400.0) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        check_ttl(default_ttl_seconds)
        self.max_entries = max_entries
        self.default_ttl_seconds = default_ttl_seconds
        self._file = _File(Path(path))

    @property
    def path(self) -> Path:
        return self._file.path

    def get(self, key: str) -> LLMResponse | None:
        row = self._file.connect().execute(
            "SELECT value FROM entries WHERE key = ? AND expires_at > ?", (key, time.time())).fetchone()
        if row is None:
            return None
        try:
            return decode_response(row[0])
        except ValueError:
            self.delete(key)
            return None

    def put(self, key: str, response: LLMResponse, *, ttl_seconds: float | None = None) -> None:
        check_ttl(ttl_seconds)
        ttl = ttl_seconds if ttl_seconds is not None else self.default_ttl_seconds
        now = time.time()
        expires_at = _NO_EXPIRY if ttl is None else now + ttl
        db = self._file.connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?, ?, ?)",
                       (key, encode_response(response), expires_at))
            db.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY expires_at DESC "
                       "LIMIT -1 OFFSET ?)", (self.max_entries,))

    def delete(self, key: str) -> bool:
        return self._file.connect().execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def __len__(self) -> int:
        row = self._file.connect().execute("SELECT count(*) FROM entries WHERE expires_at > ?",
                                           (time.time(),)).fetchone()
        return int(row[0])


class SQLiteLocks:
    """Locks in the cache file, for single-flight between the processes of one laptop."""

    def __init__(self, path: Path | str) -> None:
        self._file = _File(Path(path))

    def lock(self, key: str, *, ttl_seconds: float, wait_seconds: float = 0.0,
             auto_renew: bool = False) -> DistributedLock:
        return _SQLiteLock(self._file, key, ttl_seconds=ttl_seconds, wait_seconds=wait_seconds,
                           auto_renew=auto_renew)


class _SQLiteLock(DistributedLock):
    def __init__(self, file: _File, key: str, **options: Unpack[LockOptions]) -> None:
        super().__init__(key, **options)
        self._file = file

    def _try_acquire(self) -> bool:
        now = time.time()
        cursor = self._file.connect().execute(
            "INSERT INTO locks (key, token, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET token = excluded.token, expires_at = excluded.expires_at WHERE locks.expires_at <= ?",
            (self.key, self.token, now + self.ttl_seconds, now))
        return cursor.rowcount == 1

    def _release(self) -> bool:
        return self._file.connect().execute("DELETE FROM locks WHERE key = ? AND token = ? AND expires_at > ?",
                                            (self.key, self.token, time.time())).rowcount == 1

    def _extend(self, ttl_seconds: float) -> bool:
        now = time.time()
        return self._file.connect().execute(
            "UPDATE locks SET expires_at = ? WHERE key = ? AND token = ? AND expires_at > ?",
            (now + ttl_seconds, self.key, self.token, now)).rowcount == 1

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def locked(self) -> bool:
        row = self._file.connect().execute("SELECT 1 FROM locks WHERE key = ? AND expires_at > ?",
                                           (self.key, time.time())).fetchone()
        return row is not None
