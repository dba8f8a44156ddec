"""The response-cache interface the gateway uses; ``MemoryCache`` and ``RedisCache`` implement it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from wflo_core.calls import LLMResponse
from wflo_core.errors import ConfigError


@runtime_checkable
class ResponseCache(Protocol):
    """LLM responses by cache key (see ``keys.cache_key``), with expiry and a bounded size.

    Only successful responses go in: the gateway never calls ``put`` for an error.
    """

    def get(self, key: str) -> LLMResponse | None:
        """The stored response, or ``None`` if absent, expired or unreadable."""
        ...

    def put(self, key: str, response: LLMResponse, *, ttl_seconds: float | None = None) -> None:
        """Store ``response``; ``ttl_seconds=None`` uses the cache's default TTL."""
        ...

    def delete(self, key: str) -> bool:
        """Remove one entry; ``True`` if it existed."""
        ...

    def __len__(self) -> int:
        """How many entries are stored and not expired."""
        ...


def check_ttl(ttl_seconds: float | None) -> None:
    """TTLs are positive seconds or ``None`` (never expires)."""
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise ConfigError(f"ttl_seconds must be > 0 or None (no expiry), got {ttl_seconds}")
