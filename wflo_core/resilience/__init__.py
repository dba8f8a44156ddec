"""Retries with backoff and a circuit breaker per provider shared across processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wflo_core.lazy import lazy_exports

_EXPORTS = {
    "BreakerConfig": "wflo_core.resilience.breaker",
    "BreakerSnapshot": "wflo_core.resilience.breaker",
    "BreakerState": "wflo_core.resilience.breaker",
    "BreakerStore": "wflo_core.resilience.breaker",
    "CircuitBreaker": "wflo_core.resilience.breaker",
    "MemoryBreakerStore": "wflo_core.resilience.breaker",
    "RedisBreakerStore": "wflo_core.resilience.redis_breaker",
    "Attempt": "wflo_core.resilience.retry",
    "RetryPolicy": "wflo_core.resilience.retry",
    "call_with_retries": "wflo_core.resilience.retry",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)  # redis-py is imported only by what needs it

if TYPE_CHECKING:
    from wflo_core.resilience.breaker import BreakerConfig as BreakerConfig
    from wflo_core.resilience.breaker import BreakerSnapshot as BreakerSnapshot
    from wflo_core.resilience.breaker import BreakerState as BreakerState
    from wflo_core.resilience.breaker import BreakerStore as BreakerStore
    from wflo_core.resilience.breaker import CircuitBreaker as CircuitBreaker
    from wflo_core.resilience.breaker import MemoryBreakerStore as MemoryBreakerStore
    from wflo_core.resilience.redis_breaker import RedisBreakerStore as RedisBreakerStore
    from wflo_core.resilience.retry import Attempt as Attempt
    from wflo_core.resilience.retry import RetryPolicy as RetryPolicy
    from wflo_core.resilience.retry import call_with_retries as call_with_retries
