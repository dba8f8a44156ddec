"""Single-flight: N identical concurrent calls, in threads or processes, make one computation.

The first caller to take the key's lock (the leader) computes and stores the result; everyone else
polls the store and the lock until the result appears. The lock is renewed while the leader works
and expires if its process dies. When a leader fails (raises, or its lock expires), exactly one
waiter takes the lock next, finds no result and computes in its place: no deadlock and no
thundering herd, because only a lock holder who found nothing stored ever computes.

    flight = SingleFlight(cache, locks)
    response, was_leader = flight.run(cache_key(request), lambda: provider.complete(request))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, NamedTuple, Protocol, TypeVar

from wflo_core.cache.locks import LockFactory
from wflo_core.errors import LockTimeout

T = TypeVar("T")
log = logging.getLogger(__name__)

LOCK_PREFIX = "flight:"
_FIRST_POLL_SECONDS = 0.002
_MAX_POLL_SECONDS = 0.05


class ResultStore(Protocol[T]):
    """Where the leader leaves the result; ``ResponseCache`` is one (``T`` = ``LLMResponse``)."""

    def get(self, key: str) -> T | None: ...

    def put(self, key: str, value: T, *, ttl_seconds: float | None = None) -> None: ...


class FlightOutcome(NamedTuple, Generic[T]):
    value: T
    was_leader: bool
    """True if this caller ran ``compute`` (the caller that must record the upstream call)."""


class SingleFlight(Generic[T]):
    """Deduplicates concurrent computations of the same key through a store and a lock factory.

    Args:
        lock_ttl_seconds: how long a crashed leader blocks the key (the lock is renewed every
            third of this while the leader is alive).
        wait_seconds: the longest a caller waits for someone else's result before ``LockTimeout``.
    """

    def __init__(self, store: ResultStore[T], locks: LockFactory, *, lock_ttl_seconds: float = 30.0,
                 wait_seconds: float = 300.0) -> None:
        self.store = store
        self.locks = locks
        self.lock_ttl_seconds = lock_ttl_seconds
        self.wait_seconds = wait_seconds

    def run(self, key: str, compute: Callable[[], T], *,
            ttl_seconds: float | None = None) -> FlightOutcome[T]:
        """The stored value for ``key``, or the value of ``compute()`` run by exactly one caller.

        ``compute`` must return a non-None value; an exception from it propagates to this caller
        only, and nothing is stored (errors are never cached).
        """
        stored = self.store.get(key)
        if stored is not None:
            return FlightOutcome(stored, False)
        lock = self.locks.lock(LOCK_PREFIX + key, ttl_seconds=self.lock_ttl_seconds, auto_renew=True)
        deadline = time.monotonic() + self.wait_seconds
        poll = _FIRST_POLL_SECONDS
        while True:
            if lock.acquire(wait_seconds=poll):
                try:
                    return self._lead(key, compute, ttl_seconds)
                finally:
                    lock.release()
            stored = self.store.get(key)
            if stored is not None:
                return FlightOutcome(stored, False)
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"LockTimeout: waited {self.wait_seconds} s for an identical in-flight call "
                    f"({key}) to finish; the call is slower than the wait or its owner is stuck; "
                    f"raise SingleFlight wait_seconds or retry the step",
                    key=key, waited_seconds=self.wait_seconds,
                )
            poll = min(poll * 2, _MAX_POLL_SECONDS)

    def _lead(self, key: str, compute: Callable[[], T], ttl_seconds: float | None) -> FlightOutcome[T]:
        stored = self.store.get(key)  # the previous holder may have stored it just before releasing
        if stored is not None:
            return FlightOutcome(stored, False)
        value = compute()
        try:
            self.store.put(key, value, ttl_seconds=ttl_seconds)
        except Exception:
            # The call was made (and paid for); losing the cache write must not lose the result.
            log.warning("single-flight: storing the result of %s failed; waiters will recompute",
                        key, exc_info=True)
        return FlightOutcome(value, True)
