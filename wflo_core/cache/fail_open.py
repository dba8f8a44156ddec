"""The response cache and single-flight while Redis is down: reads miss, writes drop, callers compute."""

from __future__ import annotations

from collections.abc import Callable

from wflo_core.cache.base import ResponseCache
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.calls import LLMResponse
from wflo_core.resilience.fail_open import guarded, outage_errors, warn


class FailOpenCache:
    """A response cache whose outages read as misses and drop writes."""

    def __init__(self, inner: ResponseCache) -> None:
        self.inner = inner

    def get(self, key: str) -> LLMResponse | None:
        return guarded("cache read", lambda: self.inner.get(key), None)

    def put(self, key: str, response: LLMResponse, *, ttl_seconds: float | None = None) -> None:
        guarded("cache write", lambda: self.inner.put(key, response, ttl_seconds=ttl_seconds), None)

    def delete(self, key: str) -> bool:
        return guarded("cache delete", lambda: self.inner.delete(key), False)

    def __len__(self) -> int:
        return guarded("cache size", lambda: len(self.inner), 0)


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
        except outage_errors() as err:
            warn("single-flight", err)
            return (done[0] if done else tracked()), True

    return run
