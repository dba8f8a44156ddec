"""Retries with exponential backoff and jitter, honouring the provider's Retry-After.

Only errors that say they are retryable (``WfloError.retryable``: rate limits, 5xx, timeouts,
connection failures) are tried again; anything else, including ``CircuitOpen`` and every non-wflo
exception, propagates at once. When the attempts run out, ``RetriesExhausted`` is raised from the
last error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from wflo_core.errors import ConfigError, RetriesExhausted, WfloError

if TYPE_CHECKING:
    from wflo_core.config import WfloSettings

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How many times to try and how long to wait in between."""

    max_attempts: int = 4
    """Physical attempts in total, the first one included."""
    base_delay_seconds: float = 0.5
    """Backoff before retry n is drawn from [d/2, d] with d = base * 2**(n-1) ("equal jitter")."""
    max_delay_seconds: float = 30.0
    """Caps every wait, including a provider's Retry-After."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ConfigError("retry delays must be >= 0")

    @classmethod
    def from_settings(cls, settings: WfloSettings) -> RetryPolicy:
        return cls(max_attempts=settings.retry_max_attempts,
                   base_delay_seconds=settings.retry_base_delay_seconds,
                   max_delay_seconds=settings.retry_max_delay_seconds)

    def delay_before_retry(self, retry_number: int, error: BaseException, rand: float) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based); ``rand`` is uniform in [0, 1)."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return min(float(retry_after), self.max_delay_seconds)
        ceiling: float = min(self.base_delay_seconds * 2 ** (retry_number - 1), self.max_delay_seconds)
        return ceiling / 2 + rand * ceiling / 2


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened on one physical attempt; passed to ``on_attempt`` right after it."""

    number: int
    """1-based."""
    error: BaseException | None
    """None when the attempt succeeded."""
    elapsed_seconds: float
    """How long the attempt itself took."""
    next_delay_seconds: float | None
    """The wait before the next attempt, or None if there will be none."""


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, WfloError) and error.retryable


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    description: str = "the call",
    on_attempt: Callable[[Attempt], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``fn`` until it succeeds, fails with a non-retryable error, or attempts run out.

    Args:
        description: names the call in ``RetriesExhausted`` (e.g. ``"openai model 'gpt-4o'"``).
        on_attempt: called once per physical attempt, so a caller can record each billed one.
    """
    number = 0
    while True:
        number += 1
        started = clock()
        try:
            result = fn()
        except Exception as error:
            elapsed = clock() - started
            retry = is_retryable(error) and number < policy.max_attempts
            delay = policy.delay_before_retry(number, error, rand()) if retry else None
            if on_attempt is not None:
                on_attempt(Attempt(number, error, elapsed, delay))
            if not is_retryable(error):
                raise
            if delay is None:
                raise RetriesExhausted(
                    f"RetriesExhausted: {description} failed {number} time(s) with retryable errors; "
                    f"last: {error}. Check the provider's status, or raise WFLO_RETRY_MAX_ATTEMPTS",
                    attempts=number, last_error=error,
                ) from error
            sleep(delay)
            continue
        if on_attempt is not None:
            on_attempt(Attempt(number, None, clock() - started, None))
        return result
