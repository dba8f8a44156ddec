"""How the gateway keeps answering while Redis is down: cache, single-flight and breaker fail open.

Redis holds optimizations (cached answers, deduplication, shared breaker state), not money: budgets
and the ledger live in the database. So a Redis outage degrades to uncached, undeduplicated calls
with a per-process view of provider health, logged once a minute, instead of failing every step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from wflo_core.cache.base import ResponseCache
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.llm.types import LLMResponse
from wflo_core.resilience.breaker import Admission, BreakerConfig, BreakerSnapshot, BreakerStore

log = logging.getLogger("wflo.redis_outage")
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
T = TypeVar("T")


class _Warner:
    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, what: str, err: BaseException) -> None:
        if time.monotonic() - self._last > 60:
            self._last = time.monotonic()
            log.warning("Redis unavailable (%s): %s; continuing without it", what, err)


warn = _Warner()


def _guard(what: str, fn: Callable[[], T], fallback: T) -> T:
    try:
        return fn()
    except OUTAGE_ERRORS as err:
        warn(what, err)
        return fallback


class FailOpenCache:
    """A response cache whose outages read as misses and drop writes."""

    def __init__(self, inner: ResponseCache) -> None:
        self.inner = inner

    def get(self, key: str) -> LLMResponse | None:
        return _guard("cache read", lambda: self.inner.get(key), None)

    def put(self, key: str, response: LLMResponse, *, ttl_seconds: float | None = None) -> None:
        _guard("cache write", lambda: self.inner.put(key, response, ttl_seconds=ttl_seconds), None)

    def delete(self, key: str) -> bool:
        return _guard("cache delete", lambda: self.inner.delete(key), False)

    def __len__(self) -> int:
        return _guard("cache size", lambda: len(self.inner), 0)


def fail_open_single_flight(flights: SingleFlight[LLMResponse]) -> Callable[..., tuple[LLMResponse, bool]]:
    """Single-flight that computes on its own when Redis fails, never computing twice in one caller."""

    def run(key: str, compute: Callable[[], LLMResponse]) -> tuple[LLMResponse, bool]:
        done: list[LLMResponse] = []

        def tracked() -> LLMResponse:
            done.append(compute())
            return done[0]

        try:
            value, leader = flights.run(key, tracked)
            return value, leader
        except OUTAGE_ERRORS as err:
            warn("single-flight", err)
            return (done[0] if done else tracked()), True

    return run


class FailOpenBreakerStore:
    """Breaker state that admits every call (and records nothing) while Redis is unreachable."""

    def __init__(self, inner: BreakerStore) -> None:
        self.inner = inner

    def admit(self, name: str, token: str, *, now: float, config: BreakerConfig) -> Admission:
        return _guard("breaker", lambda: self.inner.admit(name, token, now=now, config=config), Admission(True))

    def record_success(self, name: str, token: str, *, now: float) -> None:
        _guard("breaker", lambda: self.inner.record_success(name, token, now=now), None)

    def record_failure(self, name: str, token: str, *, now: float, config: BreakerConfig) -> None:
        _guard("breaker", lambda: self.inner.record_failure(name, token, now=now, config=config), None)

    def release(self, name: str, token: str) -> None:
        _guard("breaker", lambda: self.inner.release(name, token), None)

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        return self.inner.snapshot(name, now=now)

    def reset(self, name: str) -> None:
        self.inner.reset(name)
