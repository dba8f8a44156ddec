"""The ResponseCache and lock contracts, run against MemoryCache/MemoryLocks, the SQLite file and real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from wflo_core.cache.base import ResponseCache
from wflo_core.cache.codec import encode_response
from wflo_core.cache.locks import LockFactory, MemoryLocks
from wflo_core.cache.memory import MemoryCache
from wflo_core.cache.redis import RedisCache
from wflo_core.cache.redis_locks import RedisLocks
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.cache.sqlite import SQLiteCache, SQLiteLocks
from wflo_core.calls import LLMResponse, ToolCall
from wflo_core.errors import LockTimeout
from wflo_core.pricing.usage import Usage

pytestmark = pytest.mark.integration


def response(text: str) -> LLMResponse:
    return LLMResponse(provider="openai", model="gpt-4o", text=text, usage=Usage(100, 20, 50),
                       tool_calls=(ToolCall("c", "f", "{}"),), finish_reason="stop", raw={"t": text})


@pytest.fixture(params=["memory", "sqlite", "redis"])
def cache(request: pytest.FixtureRequest, tmp_path) -> ResponseCache:
    if request.param == "memory":
        return MemoryCache(max_entries=5, default_ttl_seconds=60)
    if request.param == "sqlite":
        return SQLiteCache(tmp_path / "cache.db", max_entries=5, default_ttl_seconds=60)
    client = request.getfixturevalue("redis_client")
    return RedisCache(client, namespace=f"t:{uuid.uuid4().hex[:8]}:", max_entries=5, default_ttl_seconds=60)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def locks(request: pytest.FixtureRequest, tmp_path) -> LockFactory:
    if request.param == "memory":
        return MemoryLocks()
    if request.param == "sqlite":
        return SQLiteLocks(tmp_path / "cache.db")
    return RedisLocks(request.getfixturevalue("redis_client"), namespace=f"t:{uuid.uuid4().hex[:8]}:")


# --- cache


def test_cache_round_trip_overwrite_and_delete(cache: ResponseCache) -> None:
    assert cache.get("llm:v1:a") is None
    cache.put("llm:v1:a", response("one"))
    assert cache.get("llm:v1:a") == response("one")
    cache.put("llm:v1:a", response("two"))
    assert cache.get("llm:v1:a") == response("two")
    assert len(cache) == 1
    assert cache.delete("llm:v1:a") is True
    assert cache.delete("llm:v1:a") is False
    assert cache.get("llm:v1:a") is None
    assert len(cache) == 0


def test_cache_entries_expire(cache: ResponseCache) -> None:
    cache.put("short", response("s"), ttl_seconds=0.15)
    cache.put("long", response("l"))
    time.sleep(0.3)
    assert cache.get("short") is None
    assert cache.get("long") == response("l")
    assert len(cache) == 1


def test_cache_keeps_at_most_max_entries_dropping_the_oldest(cache: ResponseCache) -> None:
    for i in range(8):
        cache.put(f"k{i}", response(str(i)))
        time.sleep(0.003)  # distinct millisecond timestamps in Redis
    assert len(cache) == 5
    assert [cache.get(f"k{i}") is not None for i in range(8)] == [False] * 3 + [True] * 5


def test_cache_is_safe_under_concurrent_writers(cache: ResponseCache) -> None:
    def write(worker: int) -> None:
        for i in range(30):
            cache.put(f"w{worker}-{i}", response(f"{worker}-{i}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 5
    present = [cache.get(f"w{w}-{i}") for w in range(4) for i in range(30)]
    assert sorted(r.text for r in present if r is not None) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(30) if present[w * 30 + i] is not None)
    assert sum(r is not None for r in present) == 5


# --- Redis-only


def test_redis_entries_carry_a_ttl_and_reads_are_plain_gets(redis_client) -> None:
    cache = RedisCache(redis_client, namespace="t:ttl:", default_ttl_seconds=30)
    cache.put("k", response("x"))
    assert 29_000 < redis_client.pttl("t:ttl:k") <= 30_000
    assert redis_client.get("t:ttl:k") == encode_response(response("x"))


def test_redis_expired_entries_do_not_count_against_the_limit(redis_client) -> None:
    cache = RedisCache(redis_client, namespace="t:prune:", max_entries=3)
    for i in range(3):
        cache.put(f"old{i}", response("o"), ttl_seconds=0.05)
    time.sleep(0.15)
    for i in range(3):
        cache.put(f"new{i}", response("n"))
    assert all(cache.get(f"new{i}") is not None for i in range(3))
    assert redis_client.zcard("t:prune:index") == 3


def test_redis_corrupt_entry_is_a_miss_and_is_removed(redis_client) -> None:
    cache = RedisCache(redis_client, namespace="t:bad:")
    redis_client.set("t:bad:k", b"\x00garbage")
    assert cache.get("k") is None
    assert redis_client.exists("t:bad:k") == 0


def test_redis_namespaces_are_isolated(redis_client) -> None:
    a = RedisCache(redis_client, namespace="t:a:")
    b = RedisCache(redis_client, namespace="t:b:")
    a.put("k", response("a"))
    assert b.get("k") is None and len(b) == 0


# --- locks


def test_lock_is_exclusive_and_only_the_owner_releases(locks: LockFactory) -> None:
    a = locks.lock("res", ttl_seconds=10)
    b = locks.lock("res", ttl_seconds=10)
    assert a.acquire()
    assert not b.acquire()
    assert b.release() is False  # B cannot release A's lock
    assert b.locked() and not b.acquire()
    assert a.release() is True
    assert b.acquire()
    assert a.release() is False  # A's token no longer owns it
    assert b.release() is True


def test_lock_expiry_frees_it_and_the_late_owner_cannot_free_the_new_one(locks: LockFactory) -> None:
    a = locks.lock("res", ttl_seconds=0.15)
    b = locks.lock("res", ttl_seconds=10)
    assert a.acquire()
    time.sleep(0.3)
    assert b.acquire()
    assert a.release() is False
    assert a.extend() is False
    assert b.locked()


def test_lock_wait_succeeds_when_the_holder_releases(locks: LockFactory) -> None:
    a = locks.lock("res", ttl_seconds=10)
    assert a.acquire()
    threading.Timer(0.2, a.release).start()
    started = time.monotonic()
    assert locks.lock("res", ttl_seconds=10).acquire(wait_seconds=5)
    assert 0.15 < time.monotonic() - started < 2


def test_lock_wait_is_bounded(locks: LockFactory) -> None:
    assert locks.lock("res", ttl_seconds=10).acquire()
    started = time.monotonic()
    assert not locks.lock("res", ttl_seconds=10).acquire(wait_seconds=0.2)
    assert 0.2 <= time.monotonic() - started < 1


def test_lock_context_manager_raises_lock_timeout_and_always_releases(locks: LockFactory) -> None:
    with pytest.raises(RuntimeError), locks.lock("res", ttl_seconds=10):
        raise RuntimeError("step failed")
    holder = locks.lock("res", ttl_seconds=10)
    assert holder.acquire()
    with pytest.raises(LockTimeout, match="'res' is held by another owner") as raised:
        with locks.lock("res", ttl_seconds=10, wait_seconds=0.05):
            pytest.fail("entered a held lock")
    assert raised.value.key == "res"


def test_lock_extend_and_auto_renew_outlive_the_ttl(locks: LockFactory) -> None:
    a = locks.lock("manual", ttl_seconds=0.2)
    assert a.acquire()
    assert a.extend(10)
    time.sleep(0.3)
    assert not locks.lock("manual", ttl_seconds=1).acquire()
    renewed = locks.lock("auto", ttl_seconds=0.3, auto_renew=True)
    assert renewed.acquire()
    time.sleep(0.8)
    assert not locks.lock("auto", ttl_seconds=1).acquire()
    assert not renewed.lost
    assert renewed.release()


def test_lock_gives_mutual_exclusion_between_threads(locks: LockFactory) -> None:
    counter = {"n": 0}

    def work() -> None:
        for _ in range(20):
            with locks.lock("counter", ttl_seconds=5, wait_seconds=10):
                value = counter["n"]
                time.sleep(0.0005)
                counter["n"] = value + 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter["n"] == 100


# --- single-flight


@pytest.fixture(params=["memory", "sqlite", "redis"])
def flight_parts(request: pytest.FixtureRequest, tmp_path) -> tuple[ResponseCache, LockFactory]:
    if request.param == "memory":
        return MemoryCache(), MemoryLocks()
    if request.param == "sqlite":
        return SQLiteCache(tmp_path / "cache.db"), SQLiteLocks(tmp_path / "cache.db")
    client = request.getfixturevalue("redis_client")
    return RedisCache(client, namespace="t:sf:"), RedisLocks(client, namespace="t:sf:lock:")


def test_single_flight_computes_once_for_twenty_threads(flight_parts) -> None:
    cache, locks = flight_parts
    flight = SingleFlight(cache, locks)
    calls: list[int] = []
    barrier = threading.Barrier(20)
    outcomes = []

    def compute() -> LLMResponse:
        calls.append(1)
        time.sleep(0.3)
        return response("shared")

    def worker() -> None:
        barrier.wait()
        outcomes.append(flight.run("llm:v1:same", compute))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1
    assert [o.value for o in outcomes] == [response("shared")] * 20
    assert sum(o.was_leader for o in outcomes) == 1
    assert cache.get("llm:v1:same") == response("shared")
