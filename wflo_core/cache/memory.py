"""In-process response cache for the embedded mode: LRU bounded by entry count, per-entry TTL."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from wflo_core.cache.base import check_ttl
from wflo_core.cache.codec import decode_response, encode_response
from wflo_core.calls import LLMResponse
from wflo_core.errors import ConfigError


class MemoryCache:
    """A thread-safe LRU of encoded responses.

    Entries are stored encoded (the same bytes Redis would hold) so a caller mutating a returned
    response's ``raw`` dict cannot change what later hits see.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        default_ttl_seconds: float | None = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"max_entries must be >= 1, got {max_entries}")
        check_ttl(default_ttl_seconds)
        self.max_entries = max_entries
        self.default_ttl_seconds = default_ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, key: str) -> LLMResponse | None:
        with self._mutex:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, data = entry
            if expires_at <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        try:
            return decode_response(data)
        except ValueError:
            self.delete(key)
            return None

    def put(self, key: str, response: LLMResponse, *, ttl_seconds: float | None = None) -> None:
        check_ttl(ttl_seconds)
        ttl = ttl_seconds if ttl_seconds is not None else self.default_ttl_seconds
        expires_at = float("inf") if ttl is None else self._clock() + ttl
        data = encode_response(response)
        with self._mutex:
            self._entries[key] = (expires_at, data)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> bool:
        with self._mutex:
            return self._entries.pop(key, None) is not None

    def __len__(self) -> int:
        now = self._clock()
        with self._mutex:
            return sum(1 for expires_at, _ in self._entries.values() if expires_at > now)
