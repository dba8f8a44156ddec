"""Response cache in Redis, shared by every process of a deployment.

Size limit: besides its own TTL, every entry is listed in a sorted-set index scored by its expiry
time. The write script (one atomic Lua call) drops index members whose entries already expired and,
when more than ``max_entries`` remain, evicts the entries closest to expiry (with one TTL for all
entries: the oldest). Reads are one plain ``GET`` and do not touch the index, so a hit costs the
same round trip as reading the bytes directly. Setting ``maxmemory-policy volatile-lru`` on the
server is a sensible backstop but not relied on: every entry has a TTL unless told otherwise.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

import redis as redis_lib

from wflo_core.cache.base import check_ttl
from wflo_core.cache.codec import decode_response, encode_response
from wflo_core.calls import LLMResponse
from wflo_core.errors import ConfigError

DEFAULT_NAMESPACE = "wflo:cache:"
#: Index member scores for entries without TTL: far past any real expiry, still a valid double.
_NO_EXPIRY_MS = 2**52

_PUT_SCRIPT = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl_ms = tonumber(ARGV[2])
local expires_ms = tonumber(ARGV[4])
if ttl_ms > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl_ms)
  expires_ms = now_ms + ttl_ms
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], expires_ms, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local victims = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #victims, 2 do redis.call('DEL', victims[i]) end
  return excess
end
return 0
"""

_LEN_SCRIPT = """
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return redis.call('ZCARD', KEYS[1])
"""


class RedisCacheOptions(TypedDict, total=False):
    """``RedisCache``'s keyword options, for :meth:`RedisCache.from_url`."""

    namespace: str
    max_entries: int
    default_ttl_seconds: float | None


class RedisCache:
    """Encoded ``LLMResponse``s under ``namespace + key`` with a TTL and a max-entries bound."""

    def __init__(
        self,
        client: redis_lib.Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_entries: int = 10_000,
        default_ttl_seconds: float | None = 86_400.0,
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"max_entries must be >= 1, got {max_entries}")
        check_ttl(default_ttl_seconds)
        self.client = client
        self.namespace = namespace
        self.max_entries = max_entries
        self.default_ttl_seconds = default_ttl_seconds
        self._index_key = namespace + "index"  # cache keys are "llm:v1:<hex>", never "index"
        self._put = client.register_script(_PUT_SCRIPT)
        self._len = client.register_script(_LEN_SCRIPT)

    @classmethod
    def from_url(cls, url: str, **options: Unpack[RedisCacheOptions]) -> RedisCache:
        return cls(redis_lib.Redis.from_url(url), **options)

    def get(self, key: str) -> LLMResponse | None:
        data = self.client.get(self.namespace + key)
        if data is None:
            return None
        try:
            return decode_response(data)
        except ValueError:
            self.delete(key)
            return None

    def put(self, key: str, response: LLMResponse, *, ttl_seconds: float | None = None) -> None:
        check_ttl(ttl_seconds)
        ttl = ttl_seconds if ttl_seconds is not None else self.default_ttl_seconds
        ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._put(keys=[self.namespace + key, self._index_key],
                  args=[encode_response(response), ttl_ms, self.max_entries, _NO_EXPIRY_MS])

    def delete(self, key: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.namespace + key)
        pipe.zrem(self._index_key, self.namespace + key)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def __len__(self) -> int:
        return int(self._len(keys=[self._index_key]))
