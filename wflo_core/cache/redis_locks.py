"""Locks in Redis: ``SET NX PX`` to take, Lua compare-and-delete / compare-and-expire to release/extend."""

from __future__ import annotations

import time
from typing import Unpack

import redis as redis_lib

from wflo_core.cache.locks import DistributedLock, LockOptions

DEFAULT_NAMESPACE = "wflo:lock:"

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisLocks:
    """Lock handles on one Redis; keys live under ``namespace``."""

    def __init__(self, client: redis_lib.Redis, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.namespace = namespace
        self._release = client.register_script(_RELEASE_SCRIPT)
        self._extend = client.register_script(_EXTEND_SCRIPT)

    def lock(self, key: str, *, ttl_seconds: float, wait_seconds: float = 0.0,
             auto_renew: bool = False) -> DistributedLock:
        return _RedisLock(self, key, ttl_seconds=ttl_seconds, wait_seconds=wait_seconds,
                          auto_renew=auto_renew)


class _RedisLock(DistributedLock):
    def __init__(self, locks: RedisLocks, key: str, **options: Unpack[LockOptions]) -> None:
        super().__init__(key, **options)
        self._locks = locks
        self._redis_key = locks.namespace + key

    def _try_acquire(self) -> bool:
        ttl_ms = max(1, round(self.ttl_seconds * 1000))
        return bool(self._locks.client.set(self._redis_key, self.token, nx=True, px=ttl_ms))

    def _release(self) -> bool:
        return bool(self._locks._release(keys=[self._redis_key], args=[self.token]))

    def _extend(self, ttl_seconds: float) -> bool:
        ttl_ms = max(1, round(ttl_seconds * 1000))
        return bool(self._locks._extend(keys=[self._redis_key], args=[self.token, ttl_ms]))

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def locked(self) -> bool:
        return bool(self._locks.client.exists(self._redis_key))
