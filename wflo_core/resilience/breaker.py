"""A circuit breaker per provider, so an outage makes every caller fail fast instead of piling on.

    closed ──(failure_threshold consecutive health failures)──▶ open
    open ──(reset_timeout elapsed; next caller)──▶ half_open
    half_open: at most ``half_open_probes`` calls go through at once; everyone else gets CircuitOpen
    half_open ──(a probe succeeds)──▶ closed      half_open ──(a probe fails)──▶ open (timer restarts)

Only failures that say something about the provider's health count: retryable errors (429, 5xx,
timeouts, connection errors). A provider that answers 400 or 401 is up, so those count as successes.
The state lives in a ``BreakerStore``: ``RedisBreakerStore`` shares it between every process of a
deployment with atomic Lua transitions; ``MemoryBreakerStore`` is the in-process twin with the same
contract. A probe whose process died stops counting after ``probe_timeout_seconds``.

While closed the breaker costs nothing: after a success, calls go straight through for
``local_view_seconds`` without asking the store; a failure, and the success after it, always do.
So a breaker opened by another process stops this one within ``local_view_seconds``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

from wflo_core.errors import CircuitOpen, ConfigError, WfloError
from wflo_core.resilience.retry import is_retryable

if TYPE_CHECKING:
    from wflo_core.config import WfloSettings

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    """Consecutive health failures that open the breaker."""
    reset_timeout_seconds: float = 30.0
    """How long it stays open before letting probes through."""
    half_open_probes: int = 1
    """How many calls may be in flight at once while half-open."""
    probe_timeout_seconds: float = 120.0
    """After this long an unfinished probe (its process died) no longer holds a probe slot."""
    local_view_seconds: float = 1.0
    """After a success, how long this process trusts that the breaker is closed with no failures and
    sends without asking the store (Redis): a breaker opened elsewhere stops it within this long.
    Failures always go to the store; so do the successes after them, which reset the count."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_probes < 1:
            raise ConfigError("failure_threshold and half_open_probes must be >= 1")
        if self.reset_timeout_seconds <= 0 or self.probe_timeout_seconds <= 0:
            raise ConfigError("reset_timeout_seconds and probe_timeout_seconds must be > 0")
        if self.local_view_seconds < 0:
            raise ConfigError("local_view_seconds must be >= 0 (0: ask the store before every call)")

    @classmethod
    def from_settings(cls, settings: WfloSettings) -> BreakerConfig:
        return cls(failure_threshold=settings.breaker_failure_threshold,
                   reset_timeout_seconds=settings.breaker_reset_timeout_seconds,
                   half_open_probes=settings.breaker_half_open_probes)


@dataclass(frozen=True, slots=True)
class Admission:
    """The store's answer to "may this call go through?"."""

    allowed: bool
    probe: bool = False
    """True if the call holds one of the half-open probe slots."""
    retry_in_seconds: float = 0.0
    """When refused: roughly when a call may be let through again."""
    failures: int = 0


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: BreakerState
    failures: int
    opened_at: float | None
    probes_in_flight: int


class BreakerStore(Protocol):
    """Breaker state by name; every method is one atomic transition. ``now`` is wall-clock seconds."""

    def admit(self, name: str, token: str, *, now: float, config: BreakerConfig) -> Admission: ...

    def record_success(self, name: str, token: str, *, now: float) -> None: ...

    def record_failure(self, name: str, token: str, *, now: float, config: BreakerConfig) -> None: ...

    def release(self, name: str, token: str) -> None:
        """Give back a probe slot without judging health (the call failed for another reason)."""
        ...

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot: ...

    def reset(self, name: str) -> None:
        """Forget everything: closed, no failures (an operator's manual override)."""
        ...


class CircuitBreaker:
    """Guards calls to one provider; ``call`` raises ``CircuitOpen`` without calling when open."""

    def __init__(self, name: str, *, store: BreakerStore, config: BreakerConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.store = store
        self.config = config or BreakerConfig()
        self._clock = clock
        self._closed_until = 0.0
        """Until then the breaker is known closed with no failures, and calls go through without the store."""

    def call(self, fn: Callable[[], T]) -> T:
        token = secrets.token_hex(8)
        if self._clock() < self._closed_until:  # closed with no failures, as the store said moments ago
            try:
                return fn()
            except Exception as error:
                if is_retryable(error):
                    self._closed_until = 0.0
                    self.store.record_failure(self.name, token, now=self._clock(), config=self.config)
                raise
        admission = self.store.admit(self.name, token, now=self._clock(), config=self.config)
        if not admission.allowed:
            raise CircuitOpen(
                f"CircuitOpen: the circuit breaker for provider {self.name!r} is open after "
                f"{self.config.failure_threshold} consecutive failures (rate limits, 5xx, timeouts); "
                f"nothing was sent. A probe is let through in about {admission.retry_in_seconds:.1f} s; "
                f"check the provider's status or WFLO_BREAKER_* settings",
                provider=self.name, retry_in_seconds=admission.retry_in_seconds,
            )
        try:
            result = fn()
        except Exception as error:
            if is_retryable(error):
                self.store.record_failure(self.name, token, now=self._clock(), config=self.config)
            elif isinstance(error, WfloError):  # e.g. 400/401: the provider answered, it is up
                self._record_success(token)
            else:
                self.store.release(self.name, token)
            raise
        except BaseException:
            self.store.release(self.name, token)
            raise
        self._record_success(token)
        return result

    def _record_success(self, token: str) -> None:
        """Report a healthy answer: the store is closed with no failures now, so the next calls for
        ``local_view_seconds`` need not ask it."""
        self.store.record_success(self.name, token, now=self._clock())
        self._closed_until = self._clock() + self.config.local_view_seconds

    def snapshot(self) -> BreakerSnapshot:
        return self.store.snapshot(self.name, now=self._clock())


@dataclass
class _Circuit:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float | None = None
    probes: dict[str, float] = field(default_factory=dict)
    """Probe token -> deadline."""


class MemoryBreakerStore:
    """In-process breaker state, for the embedded mode and unit tests."""

    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}
        self._mutex = threading.Lock()

    def admit(self, name: str, token: str, *, now: float, config: BreakerConfig) -> Admission:
        with self._mutex:
            c = self._circuits.setdefault(name, _Circuit())
            if c.state is BreakerState.CLOSED:
                return Admission(True, failures=c.failures)
            if c.state is BreakerState.OPEN:
                assert c.opened_at is not None
                if now < c.opened_at + config.reset_timeout_seconds:
                    return Admission(False, retry_in_seconds=c.opened_at + config.reset_timeout_seconds - now,
                                     failures=c.failures)
                c.state, c.probes = BreakerState.HALF_OPEN, {}
            c.probes = {t: deadline for t, deadline in c.probes.items() if deadline > now}
            if len(c.probes) < config.half_open_probes:
                c.probes[token] = now + config.probe_timeout_seconds
                return Admission(True, probe=True, failures=c.failures)
            return Admission(False, retry_in_seconds=min(c.probes.values()) - now, failures=c.failures)

    def record_success(self, name: str, token: str, *, now: float) -> None:
        with self._mutex:
            c = self._circuits.setdefault(name, _Circuit())
            if c.state is BreakerState.CLOSED:
                c.failures = 0
            elif c.state is BreakerState.HALF_OPEN and c.probes.pop(token, None) is not None:
                self._circuits[name] = _Circuit()

    def record_failure(self, name: str, token: str, *, now: float, config: BreakerConfig) -> None:
        with self._mutex:
            c = self._circuits.setdefault(name, _Circuit())
            if c.state is BreakerState.CLOSED:
                c.failures += 1
                if c.failures >= config.failure_threshold:
                    c.state, c.opened_at = BreakerState.OPEN, now
            elif c.state is BreakerState.HALF_OPEN and c.probes.pop(token, None) is not None:
                c.state, c.opened_at, c.probes = BreakerState.OPEN, now, {}

    def release(self, name: str, token: str) -> None:
        with self._mutex:
            c = self._circuits.get(name)
            if c is not None:
                c.probes.pop(token, None)

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        with self._mutex:
            c = self._circuits.get(name, _Circuit())
            live = sum(1 for deadline in c.probes.values() if deadline > now)
            return BreakerSnapshot(c.state, c.failures, c.opened_at, live)

    def reset(self, name: str) -> None:
        with self._mutex:
            self._circuits.pop(name, None)
