"""Redis outages fail open: guarded calls log once a minute and fall back instead of failing the step.

Redis holds optimizations (cached answers, deduplication, shared breaker state), not money: budgets
and the ledger live in the database. So a Redis outage degrades to uncached, undeduplicated calls
with a per-process view of provider health, instead of failing every step.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from wflo_core.resilience.breaker import Admission, BreakerConfig, BreakerSnapshot, BreakerStore

log = logging.getLogger("wflo.redis_outage")
@functools.cache
def outage_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable Redis raises (redis-py is imported on first need: embedded runs never do)."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)
T = TypeVar("T")


class _Warner:
    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, what: str, err: BaseException) -> None:
        if time.monotonic() - self._last > 60:
            self._last = time.monotonic()
            log.warning("Redis unavailable (%s): %s; continuing without it", what, err)


warn = _Warner()


def guarded(what: str, fn: Callable[[], T], fallback: T) -> T:
    """``fn()``, or ``fallback`` (logged) when Redis is unreachable."""
    try:
        return fn()
    except outage_errors() as err:
        warn(what, err)
        return fallback


class FailOpenBreakerStore:
    """Breaker state that admits every call (and records nothing) while Redis is unreachable."""

    def __init__(self, inner: BreakerStore) -> None:
        self.inner = inner

    def admit(self, name: str, token: str, *, now: float, config: BreakerConfig) -> Admission:
        return guarded("breaker", lambda: self.inner.admit(name, token, now=now, config=config), Admission(True))

    def record_success(self, name: str, token: str, *, now: float) -> None:
        guarded("breaker", lambda: self.inner.record_success(name, token, now=now), None)

    def record_failure(self, name: str, token: str, *, now: float, config: BreakerConfig) -> None:
        guarded("breaker", lambda: self.inner.record_failure(name, token, now=now, config=config), None)

    def release(self, name: str, token: str) -> None:
        guarded("breaker", lambda: self.inner.release(name, token), None)

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        return self.inner.snapshot(name, now=now)

    def reset(self, name: str) -> None:
        self.inner.reset(name)
