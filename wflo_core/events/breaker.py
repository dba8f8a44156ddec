"""A breaker for the in-step relay: once a publish failed, steps stop trying until the cool-down ends.

Steps publish their events on the way out as a courtesy; the outbox already holds them, and the
relay sensor or ``wflo events relay`` publish whatever is left. So a step must never wait on a
broker that is down. The first failed in-step publish opens the breaker; while it is open, in-step
relays are skipped without touching the broker. Its state is a marker file's mtime under
``WFLO_HOME``, shared by every process on the host (parallel step workers) at the cost of one
``stat``, and it needs no Redis, which may be down too. The catch-up relays close it again once a
publish succeeds.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_COOLDOWN_S = 30.0


@dataclass(frozen=True, slots=True)
class PublishBreaker:
    """Open while ``marker`` was touched less than ``cooldown_s`` ago."""

    marker: Path
    cooldown_s: float = DEFAULT_COOLDOWN_S

    @classmethod
    def for_target(cls, home: Path, target: str, *, cooldown_s: float = DEFAULT_COOLDOWN_S) -> PublishBreaker:
        """One breaker per sink target (bootstrap servers or file), under ``home/breakers``."""
        digest = hashlib.sha256(target.encode()).hexdigest()[:16]
        return cls(home / "breakers" / f"events-{digest}", cooldown_s)

    @property
    def is_open(self) -> bool:
        try:
            opened = self.marker.stat().st_mtime
        except FileNotFoundError:
            return False
        return time.time() - opened < self.cooldown_s

    def open(self) -> None:
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.touch()
        os.utime(self.marker)  # touch() keeps an existing file's mtime on some filesystems

    def close(self) -> None:
        self.marker.unlink(missing_ok=True)
