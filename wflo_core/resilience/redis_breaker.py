"""Breaker state in Redis, shared by every process: one hash and one probe set per provider.

Each transition is one Lua script, so two processes can never both move the same breaker (for
example both take the last half-open probe slot). Time comes from the callers' clocks (``now``);
processes of one deployment are assumed to agree on wall-clock time to well under the reset timeout.
"""

from __future__ import annotations

import redis as redis_lib

from wflo_core.resilience.breaker import Admission, BreakerConfig, BreakerSnapshot, BreakerState

DEFAULT_NAMESPACE = "wflo:breaker:"

# KEYS: state hash, probe zset. ARGV: now, token, reset_timeout, max_probes, probe_timeout.
# Returns {allowed, probe, retry_in (string: Lua numbers become integers on the way out), failures}.
_ADMIT = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local now = tonumber(ARGV[1])
if state == 'closed' then return {1, 0, '0', failures} end
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'opened_at')) + tonumber(ARGV[3])
  if now < reopen then return {0, 0, tostring(reopen - now), failures} end
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  redis.call('DEL', KEYS[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
  return {1, 1, '0', failures}
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {0, 0, tostring(tonumber(first[2]) - now), failures}
"""

# KEYS: state hash, probe zset. ARGV: token.
_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  if redis.call('HGET', KEYS[1], 'failures') ~= '0' then redis.call('HSET', KEYS[1], 'failures', 0) end
elseif state == 'half_open' and redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('DEL', KEYS[2])
end
return 0
"""

# KEYS: state hash, probe zset. ARGV: now, token, failure_threshold.
_FAILURE = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if failures >= tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1])
  else
    redis.call('HSET', KEYS[1], 'state', 'closed')
  end
elseif state == 'half_open' and redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1])
  redis.call('DEL', KEYS[2])
end
return 0
"""


class RedisBreakerStore:
    """``BreakerStore`` on Redis; keys ``<namespace><name>`` (hash) and ``<namespace><name>:probes``."""

    def __init__(self, client: redis_lib.Redis, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.namespace = namespace
        self._admit = client.register_script(_ADMIT)
        self._success = client.register_script(_SUCCESS)
        self._failure = client.register_script(_FAILURE)

    def _keys(self, name: str) -> list[str]:
        return [self.namespace + name, self.namespace + name + ":probes"]

    def admit(self, name: str, token: str, *, now: float, config: BreakerConfig) -> Admission:
        allowed, probe, retry_in, failures = self._admit(
            keys=self._keys(name),
            args=[repr(now), token, repr(config.reset_timeout_seconds), config.half_open_probes,
                  repr(config.probe_timeout_seconds)],
        )
        return Admission(bool(allowed), probe=bool(probe), retry_in_seconds=float(retry_in),
                         failures=int(failures))

    def record_success(self, name: str, token: str, *, now: float) -> None:
        self._success(keys=self._keys(name), args=[token])

    def record_failure(self, name: str, token: str, *, now: float, config: BreakerConfig) -> None:
        self._failure(keys=self._keys(name), args=[repr(now), token, config.failure_threshold])

    def release(self, name: str, token: str) -> None:
        self.client.zrem(self._keys(name)[1], token)

    def snapshot(self, name: str, *, now: float) -> BreakerSnapshot:
        state_key, probes_key = self._keys(name)
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(state_key)
        pipe.zcount(probes_key, f"({now!r}", "+inf")
        fields, probes = pipe.execute()
        fields = {k.decode(): v.decode() for k, v in fields.items()}
        opened_at = fields.get("opened_at")
        return BreakerSnapshot(BreakerState(fields.get("state", "closed")), int(fields.get("failures", 0)),
                               float(opened_at) if opened_at is not None else None, int(probes))

    def reset(self, name: str) -> None:
        self.client.delete(*self._keys(name))
