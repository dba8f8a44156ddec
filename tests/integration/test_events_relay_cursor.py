"""The relay's cursor on Postgres, where ids are drawn at INSERT and commit in any order: a row that
commits after a later one is never skipped and never sent twice, and a relay killed between sending
and moving its cursor sends again, losing nothing."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.integration.test_events_relay_pipeline import call
from wflo_core.events import (
    JsonlEventSink,
    MemoryEventSink,
    OutboxRelay,
    TopicLayout,
    emit,
    pending_count,
)
from wflo_core.ledger.models import OutboxCursor, OutboxEvent
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration

TOPIC = TopicLayout("cursor").events


@pytest.fixture
def ledger(postgres_ledger: Ledger) -> Ledger:
    return postgres_ledger


def cursor_at(ledger: Ledger) -> int:
    with ledger.transaction() as s:
        return s.scalar(select(func.coalesce(func.max(OutboxCursor.relayed_through), 0))) or 0


def row_id(ledger: Ledger, event_id: str) -> int:
    with ledger.transaction() as s:
        found = s.scalar(select(OutboxEvent.id).where(OutboxEvent.event_id == event_id))
        assert found is not None
        return found


def test_a_row_committing_after_a_later_one_is_neither_skipped_nor_sent_twice(ledger: Ledger) -> None:
    sink = MemoryEventSink()
    with Session(ledger.engine) as early, Session(ledger.engine) as late:
        first = emit(early, call("r", 1), topic=TOPIC).id  # draws the lower id, commits last
        second = emit(late, call("r", 2), topic=TOPIC).id
        late.commit()
        stats = OutboxRelay(ledger, sink).relay_until_idle()
        # the open writer may commit an id below the later row: that row goes out, marked on its own,
        # and the cursor stays below the open writer's id
        assert stats.published == 1 and [m.event_id for m in sink.messages] == [second]
        assert cursor_at(ledger) < row_id(ledger, second)
        with ledger.transaction() as s:
            assert s.scalar(select(OutboxEvent.published_at).where(OutboxEvent.event_id == second)) is not None
        early.commit()
    again = OutboxRelay(ledger, sink).relay_until_idle()
    assert again.published == 1 and [m.event_id for m in sink.messages] == [second, first]
    assert cursor_at(ledger) == row_id(ledger, second)
    with ledger.transaction() as s:
        assert pending_count(s) == 0
    assert OutboxRelay(ledger, sink).relay_until_idle().published == 0
    # consumers order the run by the sequence extension: the earlier insert sorts first
    sequences = {json.loads(m.value)["id"]: json.loads(m.value)["sequence"] for m in sink.messages}
    assert sequences[first] < sequences[second]


def test_a_writer_that_drew_an_id_while_waiting_on_another_holds_the_cursor_back(ledger: Ledger) -> None:
    """A writer whose INSERT waits on a conflicting event id has drawn its id but has no transaction
    id yet; it holds the outbox open, so the cursor does not pass it."""
    sink = MemoryEventSink()
    blocker, blocked = Session(ledger.engine), Session(ledger.engine)
    shared = emit(blocker, call("a", 1), topic=TOPIC)
    inserted = threading.Event()
    after_conflict: list[str] = []

    def second_writer() -> None:
        emit(blocked, shared, topic=TOPIC)  # waits for the blocker: the same event id
        after_conflict.append(emit(blocked, call("b", 1), topic=TOPIC).id)
        inserted.set()

    writer = threading.Thread(target=second_writer)
    writer.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the second writer waits on the blocker's row lock
        with ledger.transaction() as s:
            if s.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted")):
                break
        time.sleep(0.01)
    with ledger.transaction() as s:
        later = emit(s, call("c", 1), topic=TOPIC).id
    OutboxRelay(ledger, sink).relay_until_idle()
    assert [m.event_id for m in sink.messages] == [later]
    assert cursor_at(ledger) < row_id(ledger, later)
    blocker.commit()
    assert inserted.wait(10)
    OutboxRelay(ledger, sink).relay_until_idle()  # the blocked writer is still open
    assert [m.event_id for m in sink.messages] == [later, shared.id]
    blocked.commit()
    writer.join(10)
    blocker.close()
    blocked.close()
    OutboxRelay(ledger, sink).relay_until_idle()
    assert [m.event_id for m in sink.messages] == [later, shared.id, *after_conflict]
    with ledger.transaction() as s:
        assert pending_count(s) == 0
        assert cursor_at(ledger) == s.scalar(select(func.max(OutboxEvent.id)))


def test_writers_committing_out_of_order_under_a_running_relay_lose_nothing_and_send_nothing_twice(
    ledger: Ledger,
) -> None:
    sink = MemoryEventSink()
    stop = threading.Event()
    emitted: list[str] = []
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for n in range(40):
                with ledger.transaction() as s:
                    ids = [emit(s, call(f"w{worker}", n * 3 + i), topic=TOPIC).id for i in range(3)]
                    time.sleep(rng.random() * 0.02)  # the ids are drawn; others commit meanwhile
                emitted.extend(ids)
        except BaseException as err:  # noqa: BLE001 - asserted below
            errors.append(err)

    def relay() -> None:
        try:
            relay = OutboxRelay(ledger, sink)
            while not stop.is_set():
                relay.relay_until_idle(limit=25)
        except BaseException as err:  # noqa: BLE001 - asserted below
            errors.append(err)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    relayer = threading.Thread(target=relay)
    relayer.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with ledger.transaction() as s:
            if pending_count(s) == 0:
                break
        time.sleep(0.05)
    stop.set()
    relayer.join(30)
    assert not errors
    delivered = Counter(m.event_id for m in sink.messages)
    assert set(delivered) == set(emitted) and len(emitted) == 6 * 120
    assert max(delivered.values()) == 1
    OutboxRelay(ledger, sink).relay_until_idle()  # the cursor catches up with the last row
    with ledger.transaction() as s:
        assert cursor_at(ledger) == s.scalar(select(func.max(OutboxEvent.id)))


CRASHING_RELAY = textwrap.dedent("""
    import os, sys
    from wflo_core.events import JsonlEventSink, OutboxRelay
    from wflo_core.ledger.store import Ledger

    class DiesAfterSecondBatch(JsonlEventSink):
        batches = 0

        def deliver(self, messages):
            delivered = super().deliver(messages)
            DiesAfterSecondBatch.batches += 1
            if DiesAfterSecondBatch.batches == 2:
                os._exit(17)  # sent, never marked: killed between produce and the cursor UPDATE
            return delivered

    OutboxRelay(Ledger(sys.argv[1]), DiesAfterSecondBatch(sys.argv[2])).relay_until_idle(limit=50)
""")


def test_a_relay_killed_between_sending_and_moving_its_cursor_sends_again_and_loses_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    with ledger.transaction() as s:
        emitted = [emit(s, call(f"r{i % 4}", i), topic=TOPIC).id for i in range(200)]
    out = tmp_path / "events.jsonl"
    url = ledger.engine.url.render_as_string(hide_password=False)
    died = subprocess.run([sys.executable, "-c", CRASHING_RELAY, url, str(out)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert died.returncode == 17, died.stderr
    crashed = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert crashed == emitted[:100]
    assert cursor_at(ledger) < row_id(ledger, emitted[99])  # the second batch was never marked
    sink = JsonlEventSink(out)
    assert OutboxRelay(ledger, sink).relay_until_idle(limit=50).healthy
    sink.close()
    sent = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert set(sent) == set(emitted)  # nothing lost
    twice = {event_id for event_id, n in Counter(sent).items() if n > 1}
    assert twice and twice <= set(emitted[:100])  # at least once: only what the killed relay sent
    resent = sent[100:]
    for run in range(4):  # the second pass keeps each run's order
        ids = [e for e in emitted[run::4] if e in set(resent)]
        assert [e for e in resent if e in set(ids)] == ids
    with ledger.transaction() as s:
        assert pending_count(s) == 0


def test_ids_a_rolled_back_writer_burned_neither_end_a_pass_nor_move_the_cursor_past_a_row(ledger: Ledger) -> None:
    """Reads go by windows of ids: a gap wider than many windows (a writer that drew ids and rolled
    back) is crossed in the same pass, and the cursor lands on the last row, not short of or past it."""
    sink = MemoryEventSink()
    with ledger.transaction() as s:
        before = [emit(s, call("g", i), topic=TOPIC).id for i in range(30)]
    with Session(ledger.engine) as rolled_back:
        for i in range(1000):
            emit(rolled_back, call("gone", i), topic=TOPIC)
        rolled_back.rollback()
    with ledger.transaction() as s:
        after = [emit(s, call("g", 30 + i), topic=TOPIC).id for i in range(30)]
    stats = OutboxRelay(ledger, sink).relay_until_idle(limit=20)
    assert stats.published == 60 and [m.event_id for m in sink.messages] == before + after
    assert cursor_at(ledger) == row_id(ledger, after[-1]) > row_id(ledger, before[-1]) + 1000
    with ledger.transaction() as s:
        tail = emit(s, call("g", 60), topic=TOPIC).id
    OutboxRelay(ledger, sink).relay_until_idle(limit=20)
    assert [m.event_id for m in sink.messages][60:] == [tail]
