"""Single-flight with threads on the in-process backends."""

from __future__ import annotations

import threading
import time

import pytest

from wflo_core.cache.locks import MemoryLocks
from wflo_core.cache.memory import MemoryCache
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.calls import LLMResponse
from wflo_core.errors import LockTimeout, ProviderUnavailable
from wflo_core.pricing.usage import Usage

ANSWER = LLMResponse(provider="openai", model="gpt-4o", text="4", usage=Usage(12, 1))


def run_concurrently(n: int, target) -> list:
    """Start n threads together; return what each returned or raised."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target()
        except Exception as err:
            results[i] = err

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_twenty_identical_concurrent_calls_compute_once() -> None:
    flight = SingleFlight(MemoryCache(), MemoryLocks())
    calls = []

    def compute() -> LLMResponse:
        calls.append(1)
        time.sleep(0.2)
        return ANSWER

    results = run_concurrently(20, lambda: flight.run("k", compute))
    assert len(calls) == 1
    assert [r.value for r in results] == [ANSWER] * 20
    assert sum(r.was_leader for r in results) == 1


def test_a_stored_result_is_served_without_computing() -> None:
    cache = MemoryCache()
    cache.put("k", ANSWER)
    outcome = SingleFlight(cache, MemoryLocks()).run("k", lambda: pytest.fail("computed"))
    assert outcome == (ANSWER, False)


def test_when_the_leader_fails_exactly_one_waiter_takes_over() -> None:
    flight = SingleFlight(MemoryCache(), MemoryLocks())
    calls = []
    mutex = threading.Lock()

    def compute() -> LLMResponse:
        with mutex:
            calls.append(1)
            first = len(calls) == 1
        time.sleep(0.1)
        if first:
            raise ProviderUnavailable("upstream 503")
        return ANSWER

    results = run_concurrently(10, lambda: flight.run("k", compute))
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(calls) == 2
    assert len(errors) == 1 and isinstance(errors[0], ProviderUnavailable)
    assert [r.value for r in results if not isinstance(r, Exception)] == [ANSWER] * 9
    assert sum(r.was_leader for r in results if not isinstance(r, Exception)) == 1


def test_errors_are_not_stored() -> None:
    cache = MemoryCache()
    flight = SingleFlight(cache, MemoryLocks())
    with pytest.raises(ProviderUnavailable):
        flight.run("k", lambda: (_ for _ in ()).throw(ProviderUnavailable("503")))
    assert cache.get("k") is None
    assert flight.run("k", lambda: ANSWER) == (ANSWER, True)


def test_waiters_give_up_after_wait_seconds() -> None:
    locks = MemoryLocks()
    flight = SingleFlight(MemoryCache(), locks, wait_seconds=0.2)
    holder = locks.lock("flight:k", ttl_seconds=30)
    assert holder.acquire()
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="waited 0.2 s"):
        flight.run("k", lambda: ANSWER)
    assert 0.2 <= time.monotonic() - started < 2


def test_leader_lock_is_renewed_while_computing() -> None:
    locks = MemoryLocks()
    flight = SingleFlight(MemoryCache(), locks, lock_ttl_seconds=0.3)
    seen_locked = []

    def slow() -> LLMResponse:
        time.sleep(0.9)  # three TTLs: the lock would have expired without renewal
        seen_locked.append(locks.lock("flight:k", ttl_seconds=1).acquire())
        return ANSWER

    assert flight.run("k", slow) == (ANSWER, True)
    assert seen_locked == [False]
