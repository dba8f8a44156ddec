"""MemoryCache and MemoryLocks details that need a controllable clock (the shared contract runs in
tests/integration/test_cache_redis_contract.py against both backends)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock
from wflo_core.cache.locks import MemoryLocks
from wflo_core.cache.memory import MemoryCache
from wflo_core.calls import LLMResponse
from wflo_core.errors import ConfigError
from wflo_core.pricing.usage import Usage


def response(text: str) -> LLMResponse:
    return LLMResponse(provider="openai", model="gpt-4o", text=text, usage=Usage(10, 2))


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache = MemoryCache(max_entries=3)
    for name in "abc":
        cache.put(name, response(name))
    assert cache.get("a") == response("a")  # a is now the most recently used
    cache.put("d", response("d"))
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [response(k) for k in "acd"]
    assert len(cache) == 3


def test_entries_expire_after_their_ttl_and_default_ttl_applies() -> None:
    clock = FakeClock(1000.0)
    cache = MemoryCache(default_ttl_seconds=60, clock=clock)
    cache.put("short", response("s"), ttl_seconds=5)
    cache.put("default", response("d"))
    clock.now += 5
    assert cache.get("short") is None
    assert cache.get("default") == response("d")
    assert len(cache) == 1
    clock.now += 55
    assert cache.get("default") is None
    assert len(cache) == 0


def test_no_default_ttl_means_entries_never_expire() -> None:
    clock = FakeClock(1000.0)
    cache = MemoryCache(default_ttl_seconds=None, clock=clock)
    cache.put("k", response("k"))
    clock.now += 10**9
    assert cache.get("k") == response("k")


def test_returned_response_cannot_change_the_stored_one() -> None:
    cache = MemoryCache()
    cache.put("k", LLMResponse(provider="p", model="m", text="t", usage=Usage(), raw={"a": 1}))
    first = cache.get("k")
    assert first is not None
    first.raw["a"] = 2
    assert cache.get("k").raw == {"a": 1}  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [0, -1])
def test_nonpositive_ttl_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="ttl_seconds must be > 0"):
        MemoryCache().put("k", response("k"), ttl_seconds=bad)


def test_memory_lock_expires_on_the_clock_and_the_old_owner_cannot_release_it() -> None:
    clock = FakeClock(1000.0)
    locks = MemoryLocks(clock=clock)
    a = locks.lock("job", ttl_seconds=10)
    b = locks.lock("job", ttl_seconds=10)
    assert a.acquire()
    assert not b.acquire()
    clock.now += 10
    assert b.acquire()
    assert not a.release()
    assert not a.extend()
    assert b.locked()
    assert b.release()
    assert not b.locked()


def test_memory_lock_extend_pushes_expiry() -> None:
    clock = FakeClock(1000.0)
    locks = MemoryLocks(clock=clock)
    a = locks.lock("job", ttl_seconds=10)
    assert a.acquire()
    clock.now += 9
    assert a.extend(30)
    clock.now += 29
    assert not locks.lock("job", ttl_seconds=1).acquire()
    clock.now += 1
    assert locks.lock("job", ttl_seconds=1).acquire()
