"""Retries with backoff and a circuit breaker per provider shared across processes."""

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

__all__ = [
    "Attempt",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "MemoryBreakerStore",
    "RedisBreakerStore",
    "RetryPolicy",
    "call_with_retries",
]
