"""Containers started ahead of time, each holding a runner that waits for one job.

Each container serves exactly one run and is then gone (its runner exits after one job), so
nothing one run leaves behind can reach the next; the pool only moves the start earlier. Pool
containers are made with the sandbox's default limits and only serve runs whose container-level
limits match. An idle runner exits by itself at its maximum age, or as soon as the process that
started it goes away (its stdin closes).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class WarmPool(Generic[T]):
    """Keeps up to ``size`` started, idle runners; refills in a background thread when asked."""

    def __init__(
        self,
        start: Callable[[float], T],
        discard: Callable[[T], None],
        *,
        size: int,
        max_age_seconds: float,
    ) -> None:
        self._start = start
        self._discard = discard
        self.size = size
        self.max_age_seconds = max_age_seconds
        #: How many runners have been handed out (each exactly once).
        self.served = 0
        self._idle: deque[tuple[T, float]] = deque()
        self._lock = threading.Lock()
        self._refiller: threading.Thread | None = None
        self._closed = False

    def take(self, *, needed_seconds: float) -> T | None:
        """An idle runner that will live at least ``needed_seconds`` more, or None (never one twice)."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                runner, dies_at = self._idle.popleft()
                if dies_at - time.monotonic() >= needed_seconds:
                    self.served += 1
                    return runner
            self._discard(runner)

    def fill(self) -> None:
        """Start runners until the pool is full (blocking)."""
        while not self._closed:
            with self._lock:
                if len(self._idle) >= self.size:
                    return
            born = time.monotonic()
            runner = self._start(self.max_age_seconds)
            with self._lock:
                if not self._closed:
                    self._idle.append((runner, born + self.max_age_seconds))
                    continue
            self._discard(runner)
            return

    def refill_async(self) -> None:
        """Top the pool up in a background thread (one at a time)."""
        with self._lock:
            if self._closed or (self._refiller is not None and self._refiller.is_alive()):
                return
            self._refiller = threading.Thread(target=self._refill, name="wflo-sandbox-pool", daemon=True)
            self._refiller.start()

    def _refill(self) -> None:
        with contextlib.suppress(Exception):  # a failed refill just means a cold start later
            self.fill()

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Discard the idle runners, after any refill under way has finished."""
        with self._lock:
            self._closed = True
            refiller = self._refiller
        if refiller is not None:
            refiller.join()
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for runner, _ in idle:
            self._discard(runner)
