"""The embedded SQLite cache across real processes: what one process paid for, the next one reads."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

from wflo_core.cache.singleflight import SingleFlight
from wflo_core.cache.sqlite import SQLiteCache, SQLiteLocks
from wflo_core.calls import LLMResponse
from wflo_core.pricing.usage import Usage

SPAWN = multiprocessing.get_context("spawn")
KEY = "llm:v1:" + "cd" * 32
ANSWER = LLMResponse(provider="openai", model="gpt-4o-mini", text="the one answer", usage=Usage(40, 8))


def _five_threads(path: str, computed: str, barrier, results) -> None:
    """One process: five threads that all ask for KEY at the same moment."""
    flight = SingleFlight(SQLiteCache(path), SQLiteLocks(path))

    def compute() -> LLMResponse:
        with open(computed, "a") as file:
            file.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return ANSWER

    def one() -> None:
        barrier.wait(60)
        outcome = flight.run(KEY, compute)
        results.put((os.getpid(), outcome.value.text, outcome.was_leader))

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_twenty_identical_calls_from_four_processes_compute_once(tmp_path: Path) -> None:
    path, computed = tmp_path / "cache.db", tmp_path / "computed.txt"
    SQLiteCache(path)  # the schema exists before the race starts
    barrier, results = SPAWN.Barrier(20), SPAWN.Queue()
    procs = [SPAWN.Process(target=_five_threads, args=(str(path), str(computed), barrier, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(20)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(computed.read_text().splitlines()) == 1
    assert [text for _, text, _ in outcomes] == ["the one answer"] * 20
    assert sum(leader for _, _, leader in outcomes) == 1
    assert len({pid for pid, _, _ in outcomes}) == 4


def _store(path: str) -> None:
    SQLiteCache(path, default_ttl_seconds=60).put(KEY, ANSWER)


def test_an_answer_outlives_the_process_that_stored_it_until_its_ttl(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    writer = SPAWN.Process(target=_store, args=(str(path),))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    assert SQLiteCache(path).get(KEY) == ANSWER
    short = SQLiteCache(path)
    short.put(KEY, ANSWER, ttl_seconds=0.2)
    time.sleep(0.3)
    assert SQLiteCache(path).get(KEY) is None and len(short) == 0
