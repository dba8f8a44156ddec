"""The JSONL sink: whole lines only, even with many processes appending at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from wflo_core.config import load_settings
from wflo_core.events import (
    JsonlEventSink,
    OutboundMessage,
    SandboxFinished,
    build_event_sink,
    decode_event,
    new_event,
)
from wflo_core.events.reader import read_jsonl

WRITERS, BATCHES, PER_BATCH = 4, 25, 20


def _write(path: str, writer: int) -> None:
    sink = JsonlEventSink(path, fsync=False)
    for b in range(BATCHES):
        batch = []
        for i in range(PER_BATCH):
            # Large-ish lines (> PIPE_BUF) so torn or interleaved writes would show.
            event = new_event(
                SandboxFinished(
                    run_id=f"w{writer}", step_key="s" * 200, backend="process", wall_ms=b * PER_BATCH + i
                ),
                id=f"{writer}-{b}-{i}",
            )
            batch.append(OutboundMessage.of(event, "wflo.events"))
        assert all(d.ok for d in sink.deliver(batch))


def test_concurrent_processes_never_tear_or_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(str(path), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = [decode_event(r.value) for r in read_jsonl(path)]
    assert len(events) == len({e.id for e in events}) == WRITERS * BATCHES * PER_BATCH
    for w in range(WRITERS):  # each writer's events are in its own order
        walls = [e.data["wall_ms"] for e in events if e.data["run_id"] == f"w{w}"]
        assert walls == sorted(walls) == list(range(BATCHES * PER_BATCH))


def test_line_too_long_or_with_a_line_break_is_refused_permanently(tmp_path: Path) -> None:
    sink = JsonlEventSink(tmp_path / "e.jsonl", max_line_bytes=100)
    results = sink.deliver(
        [
            OutboundMessage("t", None, b"x" * 101, "big"),
            OutboundMessage("t", None, b"{}\n{}", "nl"),
            OutboundMessage("t", None, b"{}", "ok"),
        ]
    )
    assert [(r.ok, r.permanent) for r in results] == [(False, True), (False, True), (True, False)]
    assert (tmp_path / "e.jsonl").read_bytes() == b"{}\n"


def test_unwritable_file_is_a_retryable_failure(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    [result] = JsonlEventSink(tmp_path / "dir.jsonl").deliver([OutboundMessage("t", None, b"{}", "e")])
    assert not result.ok and not result.permanent and "cannot append" in result.error


def test_embedded_default_writes_under_wflo_home() -> None:
    sink = build_event_sink(load_settings())
    assert isinstance(sink, JsonlEventSink)
    assert sink.path == load_settings().home / "events.jsonl"
    assert "wflo-home" in str(sink.path)
