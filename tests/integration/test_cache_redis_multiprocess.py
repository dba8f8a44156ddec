"""Single-flight and lock safety across real processes sharing one Redis."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
import redis

from wflo_core.cache.redis import RedisCache
from wflo_core.cache.redis_locks import RedisLocks
from wflo_core.cache.singleflight import SingleFlight
from wflo_core.calls import LLMResponse
from wflo_core.pricing.usage import Usage

pytestmark = pytest.mark.integration

SPAWN = multiprocessing.get_context("spawn")
KEY = "llm:v1:" + "ab" * 32
COUNTER = "t:computations"
ANSWER = LLMResponse(provider="openai", model="gpt-4o", text="the one answer", usage=Usage(40, 8))


def _flight(url: str, lock_ttl_seconds: float = 30.0) -> tuple[redis.Redis, SingleFlight[LLMResponse]]:
    client = redis.Redis.from_url(url)
    return client, SingleFlight(RedisCache(client), RedisLocks(client), lock_ttl_seconds=lock_ttl_seconds)


def _five_threads(url: str, barrier, results) -> None:
    """One process: five threads that all ask for KEY at the same moment."""
    client, flight = _flight(url)

    def compute() -> LLMResponse:
        client.incr(COUNTER)
        time.sleep(0.5)
        return ANSWER

    def one() -> None:
        barrier.wait(30)
        outcome = flight.run(KEY, compute)
        results.put((os.getpid(), outcome.value.text, outcome.was_leader))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_twenty_identical_calls_from_four_processes_compute_once(redis_client, redis_url: str) -> None:
    barrier = SPAWN.Barrier(20)
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=_five_threads, args=(redis_url, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(20)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert int(redis_client.get(COUNTER)) == 1
    assert [text for _, text, _ in outcomes] == ["the one answer"] * 20
    assert sum(leader for _, _, leader in outcomes) == 1
    assert len({pid for pid, _, _ in outcomes}) == 4


def _leader_that_hangs(url: str, started) -> None:
    client, flight = _flight(url, lock_ttl_seconds=1.0)

    def compute() -> LLMResponse:
        client.incr(COUNTER)
        started.set()
        time.sleep(600)
        return ANSWER

    flight.run(KEY, compute)


def test_a_killed_leader_is_replaced_once_its_lock_expires(redis_client, redis_url: str) -> None:
    started = SPAWN.Event()
    leader = SPAWN.Process(target=_leader_that_hangs, args=(redis_url, started))
    leader.start()
    assert started.wait(30)
    os.kill(leader.pid, signal.SIGKILL)  # dies holding the lock; its renewal thread dies with it
    leader.join(10)
    _, flight = _flight(redis_url, lock_ttl_seconds=1.0)
    began = time.monotonic()
    outcome = flight.run(KEY, lambda: (redis_client.incr(COUNTER), ANSWER)[1])
    assert outcome == (ANSWER, True)
    assert time.monotonic() - began < 3
    assert int(redis_client.get(COUNTER)) == 2


def _hold_lock(url: str, ttl_seconds: float, token_out, done) -> None:
    lock = RedisLocks(redis.Redis.from_url(url)).lock("shared", ttl_seconds=ttl_seconds)
    assert lock.acquire()
    token_out.put(lock.token)
    done.wait(30)


def test_another_process_cannot_release_the_lock_but_expiry_frees_it(redis_client, redis_url: str) -> None:
    tokens, done = SPAWN.Queue(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(redis_url, 1.5, tokens, done))
    holder.start()
    token_a = tokens.get(timeout=30)
    b = RedisLocks(redis_client).lock("shared", ttl_seconds=10)
    assert not b.acquire()
    assert b.release() is False
    assert redis_client.get("wflo:lock:shared").decode() == token_a
    assert b.acquire(wait_seconds=5)  # A never released; its TTL ran out
    assert redis_client.get("wflo:lock:shared").decode() == b.token
    done.set()
    holder.join(10)
    assert b.release()
