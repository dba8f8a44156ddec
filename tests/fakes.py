"""Fakes shared by the tests: small stand-ins implementing the real interfaces (never mocks)."""

from __future__ import annotations


class FakeClock:
    """A ``time.time``/``time.monotonic`` stand-in that moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
