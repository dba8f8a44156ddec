"""Response cache, distributed locks and single-flight (Redis in production, in-process embedded)."""

from wflo_core.cache.base import ResponseCache as ResponseCache
from wflo_core.cache.codec import decode_response as decode_response
from wflo_core.cache.codec import encode_response as encode_response
from wflo_core.cache.keys import CacheMode as CacheMode
from wflo_core.cache.keys import cache_key as cache_key
from wflo_core.cache.keys import is_cacheable as is_cacheable
from wflo_core.cache.locks import DistributedLock as DistributedLock
from wflo_core.cache.locks import LockFactory as LockFactory
from wflo_core.cache.locks import MemoryLocks as MemoryLocks
from wflo_core.cache.memory import MemoryCache as MemoryCache
from wflo_core.cache.redis import RedisCache as RedisCache
from wflo_core.cache.redis_locks import RedisLocks as RedisLocks
from wflo_core.cache.singleflight import FlightOutcome as FlightOutcome
from wflo_core.cache.singleflight import SingleFlight as SingleFlight

__all__ = [
    "CacheMode",
    "DistributedLock",
    "FlightOutcome",
    "LockFactory",
    "MemoryCache",
    "MemoryLocks",
    "RedisCache",
    "RedisLocks",
    "ResponseCache",
    "SingleFlight",
    "cache_key",
    "decode_response",
    "encode_response",
    "is_cacheable",
]
