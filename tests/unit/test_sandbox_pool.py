"""The warm pool's bookkeeping and the orphan test behind the container reaper (no engine needed)."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time

from wflo_core.sandbox.docker_labels import DEADLINE_LABEL, OWNER_LABEL, is_orphaned, owner_labels
from wflo_core.sandbox.docker_pool import WarmPool


class Containers:
    """Stands in for the engine: hands out numbered 'containers' and records discards."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)
        self.discarded: list[int] = []

    def start(self, lifetime: float) -> int:
        return next(self.numbers)

    def discard(self, container: int) -> None:
        self.discarded.append(container)


def test_pool_hands_out_each_container_once_and_refills() -> None:
    engine = Containers()
    pool = WarmPool(engine.start, engine.discard, size=2, max_age_seconds=600)  # type: ignore[arg-type]
    pool.fill()
    assert pool.idle_count() == 2
    assert pool.take(needed_seconds=60) == 1
    assert pool.idle_count() == 1  # refilling waits for the run, so it never competes with it
    pool.refill_async()
    _wait_until_full(pool)
    assert pool.take(needed_seconds=60) == 2 and pool.take(needed_seconds=60) == 3
    assert pool.take(needed_seconds=60) is None and pool.served == 3
    pool.refill_async()
    _wait_until_full(pool)
    pool.close()
    assert pool.idle_count() == 0 and sorted(engine.discarded) == [4, 5]


def _wait_until_full(pool: WarmPool) -> None:
    deadline = time.monotonic() + 5
    while pool.idle_count() < pool.size and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.idle_count() == pool.size


def test_pool_discards_containers_too_old_for_the_run() -> None:
    engine = Containers()
    pool = WarmPool(engine.start, engine.discard, size=1, max_age_seconds=10)  # type: ignore[arg-type]
    pool.fill()
    assert pool.take(needed_seconds=60) is None  # would die at 10 s, the run needs 60 s
    assert engine.discarded == [1]
    pool.close()


def test_orphans_are_containers_of_dead_owners_or_past_deadline() -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    host = socket.gethostname()
    assert not is_orphaned(owner_labels(60))
    assert is_orphaned({OWNER_LABEL: f"{host}:{finished.pid}", DEADLINE_LABEL: str(int(time.time()) + 60)})
    assert is_orphaned({OWNER_LABEL: f"{host}:{os.getpid()}", DEADLINE_LABEL: str(int(time.time()) - 1)})
    assert not is_orphaned(
        {OWNER_LABEL: f"other-host:{finished.pid}", DEADLINE_LABEL: str(int(time.time()) + 60)}
    )
