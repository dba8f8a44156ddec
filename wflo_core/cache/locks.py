"""Mutual exclusion by key with an owner token, an expiry and safe release.

``RedisLocks`` (redis_locks.py) works across processes and hosts; ``MemoryLocks`` is its in-process
twin for the embedded mode, with the same contract:

* ``acquire`` succeeds for one owner at a time; ``wait_seconds`` bounds how long it keeps trying.
* A lock expires ``ttl_seconds`` after it was taken (or last extended), so a crashed owner frees it.
* ``release``/``extend`` only act if the caller's token still owns the lock: nobody can release a
  lock that expired and was taken by someone else.
* ``auto_renew=True`` extends the lock every ``ttl/3`` seconds from a daemon thread until release;
  if renewal finds the lock lost, ``lost`` turns true.

    with locks.lock("report:2024-06-01", ttl_seconds=30, wait_seconds=5):
        ...  # raises LockTimeout if not acquired within 5 s
"""

from __future__ import annotations

import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Required, TypedDict, Unpack

from wflo_core.errors import ConfigError, LockTimeout

_FIRST_POLL_SECONDS = 0.002
_MAX_POLL_SECONDS = 0.05


class LockOptions(TypedDict, total=False):
    """``DistributedLock``'s keyword options, as a backend's lock passes them on."""

    ttl_seconds: Required[float]
    wait_seconds: float
    auto_renew: bool


class DistributedLock(ABC):
    """One would-be owner of ``key``; holds its own random token."""

    def __init__(self, key: str, *, ttl_seconds: float, wait_seconds: float = 0.0,
                 auto_renew: bool = False) -> None:
        if ttl_seconds <= 0:
            raise ConfigError(f"ttl_seconds must be > 0, got {ttl_seconds}")
        if wait_seconds < 0:
            raise ConfigError(f"wait_seconds must be >= 0, got {wait_seconds}")
        self.key = key
        self.token = secrets.token_hex(16)
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.auto_renew = auto_renew
        self.lost = False
        self._stop_renewal: threading.Event | None = None

    # ------------------------------------------------------------------ backend operations

    @abstractmethod
    def _try_acquire(self) -> bool: ...

    @abstractmethod
    def _release(self) -> bool: ...

    @abstractmethod
    def _extend(self, ttl_seconds: float) -> bool: ...

    @abstractmethod
    def _pause(self, seconds: float) -> None:
        """Wait up to ``seconds`` before the next attempt (may return early when the lock frees)."""

    @abstractmethod
    def locked(self) -> bool:
        """Whether anybody (this handle or another) currently holds the key."""

    # ------------------------------------------------------------------ public API

    def acquire(self, *, wait_seconds: float | None = None) -> bool:
        """Take the lock, trying for at most ``wait_seconds`` (default: the handle's); ``True`` if taken."""
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        deadline = time.monotonic() + wait
        poll = _FIRST_POLL_SECONDS
        while not self._try_acquire():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._pause(min(poll, remaining))
            poll = min(poll * 2, _MAX_POLL_SECONDS)
        self.lost = False
        if self.auto_renew:
            self._start_renewal()
        return True

    def release(self) -> bool:
        """Free the lock if this handle still owns it; ``False`` if it had expired or was never held."""
        if self._stop_renewal is not None:
            self._stop_renewal.set()
            self._stop_renewal = None
        return self._release()

    def extend(self, ttl_seconds: float | None = None) -> bool:
        """Reset the expiry to ``ttl_seconds`` from now if this handle still owns the lock."""
        return self._extend(self.ttl_seconds if ttl_seconds is None else ttl_seconds)

    def __enter__(self) -> DistributedLock:
        if not self.acquire():
            raise LockTimeout(
                f"LockTimeout: lock {self.key!r} is held by another owner and was not freed within "
                f"{self.wait_seconds} s; raise wait_seconds or find the step holding it (it expires "
                f"{self.ttl_seconds} s after its last renewal)",
                key=self.key, waited_seconds=self.wait_seconds,
            )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _start_renewal(self) -> None:
        stop = threading.Event()
        self._stop_renewal = stop

        def renew() -> None:
            while not stop.wait(self.ttl_seconds / 3):
                if not self._extend(self.ttl_seconds):
                    self.lost = True
                    return

        threading.Thread(target=renew, name=f"lock-renew:{self.key}", daemon=True).start()


class LockFactory(Protocol):
    """Makes lock handles; ``RedisLocks`` and ``MemoryLocks`` implement it."""

    def lock(self, key: str, *, ttl_seconds: float, wait_seconds: float = 0.0,
             auto_renew: bool = False) -> DistributedLock: ...


class MemoryLocks:
    """In-process locks; waiters sleep on a condition variable and wake when a lock is released."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._owners: dict[str, tuple[str, float]] = {}
        self._changed = threading.Condition()

    def lock(self, key: str, *, ttl_seconds: float, wait_seconds: float = 0.0,
             auto_renew: bool = False) -> DistributedLock:
        return _MemoryLock(self, key, ttl_seconds=ttl_seconds, wait_seconds=wait_seconds,
                           auto_renew=auto_renew)

    def _owner(self, key: str) -> str | None:
        entry = self._owners.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._owners[key]
            return None
        return entry[0]


class _MemoryLock(DistributedLock):
    def __init__(self, store: MemoryLocks, key: str, **options: Unpack[LockOptions]) -> None:
        super().__init__(key, **options)
        self._store = store

    def _try_acquire(self) -> bool:
        with self._store._changed:
            if self._store._owner(self.key) is not None:
                return False
            self._store._owners[self.key] = (self.token, self._store._clock() + self.ttl_seconds)
            return True

    def _release(self) -> bool:
        with self._store._changed:
            if self._store._owner(self.key) != self.token:
                return False
            del self._store._owners[self.key]
            self._store._changed.notify_all()
            return True

    def _extend(self, ttl_seconds: float) -> bool:
        with self._store._changed:
            if self._store._owner(self.key) != self.token:
                return False
            self._store._owners[self.key] = (self.token, self._store._clock() + ttl_seconds)
            return True

    def _pause(self, seconds: float) -> None:
        with self._store._changed:
            if self._store._owner(self.key) is not None:
                self._store._changed.wait(seconds)

    def locked(self) -> bool:
        with self._store._changed:
            return self._store._owner(self.key) is not None
