"""Response cache, distributed locks and single-flight (Redis in production, in-process embedded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wflo_core.lazy import lazy_exports

_EXPORTS = {
    "ResponseCache": "wflo_core.cache.base",
    "decode_response": "wflo_core.cache.codec",
    "encode_response": "wflo_core.cache.codec",
    "CacheMode": "wflo_core.cache.keys",
    "cache_key": "wflo_core.cache.keys",
    "is_cacheable": "wflo_core.cache.keys",
    "DistributedLock": "wflo_core.cache.locks",
    "LockFactory": "wflo_core.cache.locks",
    "MemoryLocks": "wflo_core.cache.locks",
    "MemoryCache": "wflo_core.cache.memory",
    "RedisCache": "wflo_core.cache.redis",
    "RedisLocks": "wflo_core.cache.redis_locks",
    "FlightOutcome": "wflo_core.cache.singleflight",
    "SingleFlight": "wflo_core.cache.singleflight",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)  # redis-py is imported only by what needs it

if TYPE_CHECKING:
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
