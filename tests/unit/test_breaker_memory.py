"""The breaker state machine on the in-process store, driven by a fake clock."""

from __future__ import annotations

import threading

import pytest

from tests.fakes import FakeClock
from wflo_core.config import load_settings
from wflo_core.errors import CircuitOpen, ProviderRateLimited, ProviderRequestRejected, ProviderUnavailable
from wflo_core.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker, MemoryBreakerStore


def fail(error: Exception):
    def fn():
        raise error
    return fn


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    config = BreakerConfig(failure_threshold=3, reset_timeout_seconds=30, half_open_probes=1,
                           probe_timeout_seconds=60)
    return CircuitBreaker("openai", store=MemoryBreakerStore(), config=config, clock=clock)


def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.failure_threshold):
        with pytest.raises(ProviderUnavailable):
            breaker.call(fail(ProviderUnavailable("503")))


def test_consecutive_health_failures_open_the_breaker_and_it_fails_fast(breaker: CircuitBreaker,
                                                                        clock: FakeClock) -> None:
    open_it(breaker)
    assert breaker.snapshot().state is BreakerState.OPEN
    calls = []
    clock.now += 10
    with pytest.raises(CircuitOpen) as raised:
        breaker.call(lambda: calls.append(1))
    assert calls == []
    assert raised.value.provider == "openai"
    assert raised.value.retry_in_seconds == pytest.approx(20)
    assert "nothing was sent" in str(raised.value)


def test_a_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises(ProviderRateLimited):
            breaker.call(fail(ProviderRateLimited("429")))
    assert breaker.call(lambda: "ok") == "ok"
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            breaker.call(fail(ProviderUnavailable("503")))
    assert breaker.snapshot().state is BreakerState.CLOSED
    assert breaker.snapshot().failures == 2


@pytest.mark.parametrize("error", [ProviderRequestRejected("400"), ValueError("our bug")])
def test_errors_that_say_nothing_about_provider_health_never_open_it(breaker: CircuitBreaker,
                                                                     error: Exception) -> None:
    for _ in range(10):
        with pytest.raises(type(error)):
            breaker.call(fail(error))
    assert breaker.snapshot().state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_its_success_closes(breaker: CircuitBreaker,
                                                                 clock: FakeClock) -> None:
    open_it(breaker)
    clock.now += 30
    inside = threading.Event()
    release = threading.Event()

    def probe() -> str:
        inside.set()
        release.wait(5)
        return "recovered"

    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(breaker.call(probe)))
    t.start()
    assert inside.wait(5)
    assert breaker.snapshot().state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: pytest.fail("a second probe went through"))
    release.set()
    t.join(5)
    assert result == ["recovered"]
    snap = breaker.snapshot()
    assert (snap.state, snap.failures, snap.probes_in_flight) == (BreakerState.CLOSED, 0, 0)


def test_a_failed_probe_reopens_and_restarts_the_timer(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_it(breaker)
    clock.now += 31
    with pytest.raises(ProviderUnavailable):
        breaker.call(fail(ProviderUnavailable("still down")))
    assert breaker.snapshot().state is BreakerState.OPEN
    assert breaker.snapshot().opened_at == clock.now
    clock.now += 29
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "x")
    clock.now += 1
    assert breaker.call(lambda: "up") == "up"


def test_a_probe_that_failed_for_a_non_provider_reason_frees_its_slot(breaker: CircuitBreaker,
                                                                      clock: FakeClock) -> None:
    open_it(breaker)
    clock.now += 30
    with pytest.raises(ValueError):
        breaker.call(fail(ValueError("bug in our code")))
    assert breaker.snapshot().state is BreakerState.HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.snapshot().state is BreakerState.CLOSED


def test_a_probe_that_never_reports_stops_holding_its_slot(clock: FakeClock) -> None:
    store = MemoryBreakerStore()
    config = BreakerConfig(failure_threshold=1, reset_timeout_seconds=5, probe_timeout_seconds=10)
    store.record_failure("p", "t0", now=clock.now, config=config)
    clock.now += 5
    assert store.admit("p", "crashed", now=clock.now, config=config).probe  # never reports back
    assert not store.admit("p", "t2", now=clock.now + 9, config=config).allowed
    assert store.admit("p", "t3", now=clock.now + 10, config=config).probe


def test_config_from_settings() -> None:
    settings = load_settings(breaker_failure_threshold=2, breaker_reset_timeout_seconds=4,
                             breaker_half_open_probes=3)
    config = BreakerConfig.from_settings(settings)
    assert (config.failure_threshold, config.reset_timeout_seconds, config.half_open_probes) == (2, 4, 3)


class CountingStore(MemoryBreakerStore):
    """The in-process store, counting how often the breaker asks it anything."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def admit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.asked += 1
        return super().admit(*args, **kwargs)

    def record_success(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.asked += 1
        return super().record_success(*args, **kwargs)


def test_a_closed_breaker_asks_its_store_once_per_local_view_not_per_call(clock: FakeClock) -> None:
    store = CountingStore()
    breaker = CircuitBreaker("openai", store=store, config=BreakerConfig(local_view_seconds=1.0), clock=clock)
    for _ in range(100):
        assert breaker.call(lambda: "ok") == "ok"
    assert store.asked == 2  # the first call's admission and success; the other 99 went straight through
    clock.now += 1.5
    breaker.call(lambda: "ok")
    assert store.asked == 4


def test_a_breaker_opened_elsewhere_stops_this_process_within_the_local_view(clock: FakeClock) -> None:
    store = MemoryBreakerStore()
    config = BreakerConfig(failure_threshold=3, reset_timeout_seconds=30, local_view_seconds=1.0)
    here, elsewhere = (CircuitBreaker("openai", store=store, config=config, clock=clock) for _ in range(2))
    here.call(lambda: "ok")
    open_it(elsewhere)
    assert here.call(lambda: "still trusted") == "still trusted"  # the documented staleness, under 1 s
    clock.now += 1.01
    calls: list[int] = []
    with pytest.raises(CircuitOpen):
        here.call(lambda: calls.append(1))
    assert calls == []


def test_a_failure_in_the_local_view_reaches_the_store_and_ends_the_view(clock: FakeClock) -> None:
    config = BreakerConfig(failure_threshold=2, reset_timeout_seconds=30, local_view_seconds=60)
    breaker = CircuitBreaker("openai", store=MemoryBreakerStore(), config=config, clock=clock)
    breaker.call(lambda: "ok")
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            breaker.call(fail(ProviderUnavailable("503")))
    assert breaker.snapshot().state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "never sent")
