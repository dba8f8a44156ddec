"""Retries: which errors are retried, how long we wait, what the caller sees when attempts run out."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from wflo_core.config import load_settings
from wflo_core.errors import (
    CircuitOpen,
    ConfigError,
    ProviderAuthFailed,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
    RetriesExhausted,
)
from wflo_core.resilience.retry import Attempt, RetryPolicy, call_with_retries


class Script:
    """A callable that raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(fn: Callable[[], str], policy: RetryPolicy, **kwargs) -> tuple[str, list[float], list[Attempt]]:
    sleeps: list[float] = []
    attempts: list[Attempt] = []
    result = call_with_retries(fn, policy=policy, sleep=sleeps.append, on_attempt=attempts.append,
                               rand=lambda: 0.5, **kwargs)
    return result, sleeps, attempts


def unavailable() -> ProviderUnavailable:
    return ProviderUnavailable("503 from upstream", status_code=503)


def test_retryable_errors_are_retried_with_growing_jittered_backoff() -> None:
    fn = Script(unavailable(), unavailable(), unavailable())
    policy = RetryPolicy(max_attempts=4, base_delay_seconds=1, max_delay_seconds=30)
    result, sleeps, attempts = run(fn, policy)
    assert result == "ok" and fn.calls == 4
    # retry n waits in [d/2, d] with d = 2**(n-1); rand=0.5 -> 0.75 d
    assert sleeps == [0.75, 1.5, 3.0]
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert [a.error is None for a in attempts] == [False, False, False, True]
    assert [a.next_delay_seconds for a in attempts] == [0.75, 1.5, 3.0, None]


def test_jitter_spans_half_to_full_delay_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_seconds=1, max_delay_seconds=5)
    assert policy.delay_before_retry(3, unavailable(), 0.0) == 2.0
    assert policy.delay_before_retry(3, unavailable(), 0.999999) == pytest.approx(4.0, abs=1e-5)
    assert policy.delay_before_retry(10, unavailable(), 0.999999) == pytest.approx(5.0, abs=1e-5)


def test_retry_after_is_honoured_and_capped() -> None:
    fn = Script(ProviderRateLimited("429", retry_after=7.0), ProviderRateLimited("429", retry_after=600.0))
    result, sleeps, _ = run(fn, RetryPolicy(max_attempts=3, base_delay_seconds=0.1, max_delay_seconds=20))
    assert result == "ok"
    assert sleeps == [7.0, 20.0]


def test_rate_limit_without_retry_after_uses_backoff() -> None:
    fn = Script(ProviderRateLimited("429", retry_after=None))
    _, sleeps, _ = run(fn, RetryPolicy(base_delay_seconds=2))
    assert sleeps == [1.5]


@pytest.mark.parametrize("error", [ProviderRequestRejected("400 bad"), ProviderAuthFailed("401"),
                                   CircuitOpen("open"), KeyError("bug")])
def test_non_retryable_errors_propagate_after_one_attempt(error: Exception) -> None:
    fn = Script(error)
    with pytest.raises(type(error)) as raised:
        run(fn, RetryPolicy(max_attempts=5))
    assert raised.value is error
    assert fn.calls == 1


def test_on_attempt_sees_the_non_retryable_failure_too() -> None:
    attempts: list[Attempt] = []
    with pytest.raises(ProviderRequestRejected):
        call_with_retries(Script(ProviderRequestRejected("400")), policy=RetryPolicy(),
                          on_attempt=attempts.append, sleep=lambda s: None)
    assert len(attempts) == 1 and isinstance(attempts[0].error, ProviderRequestRejected)
    assert attempts[0].next_delay_seconds is None


def test_exhausted_retries_raise_with_attempts_and_the_last_error_chained() -> None:
    last = ProviderUnavailable("timed out")
    fn = Script(unavailable(), unavailable(), last)
    with pytest.raises(RetriesExhausted) as raised:
        run(fn, RetryPolicy(max_attempts=3), description="openai model 'gpt-4o'")
    err = raised.value
    assert fn.calls == 3
    assert err.attempts == 3
    assert err.last_error is last and err.__cause__ is last
    assert "openai model 'gpt-4o' failed 3 time(s)" in str(err) and "timed out" in str(err)
    assert not err.retryable
    assert pickle.loads(pickle.dumps(err)).attempts == 3


def test_single_attempt_policy_never_sleeps() -> None:
    sleeps: list[float] = []
    with pytest.raises(RetriesExhausted):
        call_with_retries(Script(unavailable()), policy=RetryPolicy(max_attempts=1), sleep=sleeps.append)
    assert sleeps == []


def test_attempt_duration_comes_from_the_injected_clock() -> None:
    ticks = iter([0.0, 2.5, 10.0, 10.25])
    attempts: list[Attempt] = []
    call_with_retries(Script(unavailable()), policy=RetryPolicy(), on_attempt=attempts.append,
                      sleep=lambda s: None, clock=lambda: next(ticks))
    assert [a.elapsed_seconds for a in attempts] == [2.5, 0.25]


def test_policy_from_settings_and_validation() -> None:
    settings = load_settings(retry_max_attempts=6, retry_base_delay_seconds=0.25, retry_max_delay_seconds=9)
    assert RetryPolicy.from_settings(settings) == RetryPolicy(max_attempts=6, base_delay_seconds=0.25,
                                                              max_delay_seconds=9)
    with pytest.raises(ConfigError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
