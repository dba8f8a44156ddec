"""A breaker opened in one process makes the others fail fast; half-open admits only N probes."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import redis

from wflo_core.errors import CircuitOpen, ProviderUnavailable
from wflo_core.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from wflo_core.resilience.redis_breaker import RedisBreakerStore

pytestmark = pytest.mark.integration

SPAWN = multiprocessing.get_context("spawn")
UPSTREAM_CALLS = "t:upstream-calls"
CONFIG = BreakerConfig(failure_threshold=3, reset_timeout_seconds=1.0, half_open_probes=2)


def _breaker(client: redis.Redis) -> CircuitBreaker:
    return CircuitBreaker("local-llm", store=RedisBreakerStore(client), config=CONFIG)


def _fail_until_open(url: str) -> None:
    """Process A: the provider is down; every call reaches it and fails."""
    client = redis.Redis.from_url(url)
    breaker = _breaker(client)

    def upstream() -> str:
        client.incr(UPSTREAM_CALLS)
        raise ProviderUnavailable("503 from upstream")

    for _ in range(CONFIG.failure_threshold):
        try:
            breaker.call(upstream)
        except ProviderUnavailable:
            pass


def _call_in_threads(url: str, threads: int, barrier, results) -> None:
    """Process B..: several concurrent calls to a provider that answers slowly but fine."""
    client = redis.Redis.from_url(url)
    breaker = _breaker(client)

    def upstream() -> str:
        client.incr(UPSTREAM_CALLS)
        time.sleep(0.5)
        return "ok"

    def one() -> None:
        barrier.wait(30)
        try:
            results.put(breaker.call(upstream))
        except CircuitOpen:
            results.put("circuit-open")

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _run(target, *args) -> None:
    proc = SPAWN.Process(target=target, args=args)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0


def test_breaker_opened_by_one_process_fails_fast_in_another(redis_client, redis_url: str) -> None:
    _run(_fail_until_open, redis_url)
    assert int(redis_client.get(UPSTREAM_CALLS)) == 3
    assert _breaker(redis_client).snapshot().state is BreakerState.OPEN

    barrier, results = SPAWN.Barrier(4), SPAWN.Queue()
    _run(_call_in_threads, redis_url, 4, barrier, results)
    assert [results.get(timeout=10) for _ in range(4)] == ["circuit-open"] * 4
    assert int(redis_client.get(UPSTREAM_CALLS)) == 3  # nothing reached the provider


def test_half_open_lets_only_n_probes_through_and_closes_on_success(redis_client, redis_url: str) -> None:
    _run(_fail_until_open, redis_url)
    time.sleep(CONFIG.reset_timeout_seconds + 0.1)

    barrier, results = SPAWN.Barrier(12), SPAWN.Queue()
    procs = [SPAWN.Process(target=_call_in_threads, args=(redis_url, 3, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in range(12))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert outcomes == ["circuit-open"] * 10 + ["ok"] * 2
    assert int(redis_client.get(UPSTREAM_CALLS)) == 3 + 2
    breaker = _breaker(redis_client)
    assert breaker.snapshot().state is BreakerState.CLOSED
    assert breaker.call(lambda: "back to normal") == "back to normal"
