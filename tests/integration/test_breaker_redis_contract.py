"""The BreakerStore contract on MemoryBreakerStore and RedisBreakerStore, driven by a fake clock."""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.fakes import FakeClock
from wflo_core.errors import CircuitOpen, ProviderAuthFailed, ProviderUnavailable
from wflo_core.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerStore,
    CircuitBreaker,
    MemoryBreakerStore,
)
from wflo_core.resilience.redis_breaker import RedisBreakerStore

pytestmark = pytest.mark.integration

CONFIG = BreakerConfig(failure_threshold=3, reset_timeout_seconds=30, half_open_probes=2,
                       probe_timeout_seconds=60)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> BreakerStore:
    if request.param == "memory":
        return MemoryBreakerStore()
    return RedisBreakerStore(request.getfixturevalue("redis_client"), namespace=f"t:{uuid.uuid4().hex[:6]}:")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.25)


@pytest.fixture
def breaker(store: BreakerStore, clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("openai", store=store, config=CONFIG, clock=clock)


def down():
    raise ProviderUnavailable("503")


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.failure_threshold):
        with pytest.raises(ProviderUnavailable):
            breaker.call(down)


def test_starts_closed_and_counts_consecutive_health_failures(breaker: CircuitBreaker) -> None:
    assert breaker.snapshot().state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            breaker.call(down)
    assert breaker.snapshot().failures == 2
    with pytest.raises(ProviderAuthFailed):
        breaker.call(lambda: (_ for _ in ()).throw(ProviderAuthFailed("401")))
    assert breaker.snapshot().failures == 0  # the provider answered: it is up


def test_opens_at_the_threshold_and_refuses_without_calling(breaker: CircuitBreaker,
                                                             clock: FakeClock) -> None:
    trip(breaker)
    snap = breaker.snapshot()
    assert (snap.state, snap.failures, snap.opened_at) == (BreakerState.OPEN, 3, clock.now)
    clock.now += 12.5
    with pytest.raises(CircuitOpen) as raised:
        breaker.call(lambda: pytest.fail("called through an open breaker"))
    assert raised.value.retry_in_seconds == pytest.approx(17.5)


def test_half_open_admits_the_configured_number_of_probes(store: BreakerStore, clock: FakeClock) -> None:
    breaker = CircuitBreaker("p", store=store, config=CONFIG, clock=clock)
    trip(breaker)
    clock.now += 30
    first = store.admit("p", "a", now=clock.now, config=CONFIG)
    second = store.admit("p", "b", now=clock.now, config=CONFIG)
    third = store.admit("p", "c", now=clock.now, config=CONFIG)
    assert (first.probe, second.probe, third.allowed) == (True, True, False)
    assert third.retry_in_seconds == pytest.approx(60)
    assert store.snapshot("p", now=clock.now).probes_in_flight == 2
    store.release("p", "a")
    assert store.admit("p", "d", now=clock.now, config=CONFIG).probe
    store.record_success("p", "b", now=clock.now)
    snap = store.snapshot("p", now=clock.now)
    assert (snap.state, snap.failures, snap.opened_at, snap.probes_in_flight) == (
        BreakerState.CLOSED, 0, None, 0)


def test_a_failed_probe_reopens_and_stale_outcomes_are_ignored(store: BreakerStore,
                                                                clock: FakeClock) -> None:
    breaker = CircuitBreaker("p", store=store, config=CONFIG, clock=clock)
    trip(breaker)
    clock.now += 30
    assert store.admit("p", "probe", now=clock.now, config=CONFIG).probe
    store.record_success("p", "admitted-while-closed", now=clock.now)  # not a probe: ignored
    assert store.snapshot("p", now=clock.now).state is BreakerState.HALF_OPEN
    store.record_failure("p", "probe", now=clock.now, config=CONFIG)
    snap = store.snapshot("p", now=clock.now)
    assert (snap.state, snap.opened_at, snap.probes_in_flight) == (BreakerState.OPEN, clock.now, 0)
    store.record_success("p", "probe", now=clock.now)  # a late duplicate changes nothing
    assert store.snapshot("p", now=clock.now).state is BreakerState.OPEN


def test_a_crashed_probe_stops_holding_its_slot(store: BreakerStore, clock: FakeClock) -> None:
    breaker = CircuitBreaker("p", store=store, config=CONFIG, clock=clock)
    trip(breaker)
    clock.now += 30
    assert store.admit("p", "x", now=clock.now, config=CONFIG).probe
    assert store.admit("p", "y", now=clock.now, config=CONFIG).probe
    assert not store.admit("p", "z", now=clock.now + 59, config=CONFIG).allowed
    assert store.admit("p", "z", now=clock.now + 60, config=CONFIG).probe


def test_breakers_are_independent_per_provider_and_reset_clears(store: BreakerStore,
                                                                 clock: FakeClock) -> None:
    openai = CircuitBreaker("openai", store=store, config=CONFIG, clock=clock)
    anthropic = CircuitBreaker("anthropic", store=store, config=CONFIG, clock=clock)
    trip(openai)
    assert anthropic.call(lambda: "fine") == "fine"
    store.reset("openai")
    assert openai.call(lambda: "fine") == "fine"


def test_concurrent_admissions_never_exceed_the_probe_limit(store: BreakerStore,
                                                             clock: FakeClock) -> None:
    breaker = CircuitBreaker("p", store=store, config=CONFIG, clock=clock)
    trip(breaker)
    clock.now += 30
    barrier = threading.Barrier(16)
    admitted: list[bool] = []

    def ask(i: int) -> None:
        barrier.wait()
        admitted.append(store.admit("p", f"t{i}", now=clock.now, config=CONFIG).allowed)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(admitted) == [False] * 14 + [True] * 2
