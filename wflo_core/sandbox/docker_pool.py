"""Containers started ahead of time so a run skips the create/start latency.

Each container serves exactly one run and is then destroyed; the pool only moves the start
earlier, it never reuses a container, so nothing one run leaves behind can reach the next.
Pool containers are started with the sandbox's default limits and only serve runs with exactly
those limits. Their PID 1 is ``sleep <max_age>``: an idle container dies by itself at that age,
even if the process that started it is gone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from docker.models.containers import Container

#: Start one container: (lifetime seconds) -> started container.
StartContainer = Callable[[float], Container]


class WarmPool:
    """Keeps up to ``size`` started, idle containers; refills in a background thread."""

    def __init__(
        self,
        start: StartContainer,
        discard: Callable[[Container], None],
        *,
        size: int,
        max_age_seconds: float,
    ) -> None:
        self._start = start
        self._discard = discard
        self.size = size
        self.max_age_seconds = max_age_seconds
        self._idle: deque[tuple[Container, float]] = deque()
        self._lock = threading.Lock()
        self._refilling = threading.Event()
        self._closed = False

    def take(self, *, needed_seconds: float) -> Container | None:
        """An idle container that will live at least ``needed_seconds`` more, or None."""
        chosen = None
        with self._lock:
            while self._idle and chosen is None:
                container, dies_at = self._idle.popleft()
                if dies_at - time.monotonic() >= needed_seconds:
                    chosen = container
                else:
                    self._discard(container)
        self.refill_async()
        return chosen

    def fill(self) -> None:
        """Start containers until the pool is full (blocking)."""
        while not self._closed:
            with self._lock:
                if len(self._idle) >= self.size:
                    return
            born = time.monotonic()
            container = self._start(self.max_age_seconds)
            with self._lock:
                if self._closed:
                    self._discard(container)
                    return
                self._idle.append((container, born + self.max_age_seconds))

    def refill_async(self) -> None:
        if self._refilling.is_set() or self._closed:
            return
        self._refilling.set()

        def refill() -> None:
            try:
                with contextlib.suppress(Exception):  # a failed refill just means a cold start later
                    self.fill()
            finally:
                self._refilling.clear()

        threading.Thread(target=refill, name="wflo-sandbox-pool", daemon=True).start()

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
        for container, _ in idle:
            self._discard(container)
