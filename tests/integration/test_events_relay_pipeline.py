"""The pipelined relay on Postgres: a row is marked published only once the sink acknowledged it,
whatever fails mid-batch or mid-pass, and two relays at once never publish the same event twice."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import and_, not_, select

from tests.services import KafkaBroker, free_port
from wflo_core.events import (
    Delivery,
    LLMCallSettled,
    MemoryEventSink,
    OutboundMessage,
    OutboxRelay,
    TopicLayout,
    create_topics,
    decode_event,
    emit,
    pending_count,
)
from wflo_core.events.outbox import PENDING
from wflo_core.events.reader import read_kafka
from wflo_core.events.relay import _Frontier, _Marks
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.ledger.models import OutboxEvent
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration

TOPIC = TopicLayout("pipeline").events


@pytest.fixture
def ledger(postgres_ledger: Ledger) -> Ledger:
    return postgres_ledger


def call(run: str, n: int) -> LLMCallSettled:
    return LLMCallSettled(run_id=run, provider="openai", model="m", cost_usd=Decimal("0.001"),
                          price_version="v", idempotency_key=f"{run}/{n}")


def emit_calls(ledger: Ledger, count: int, runs: int = 4) -> list[str]:
    with ledger.transaction() as s:
        return [emit(s, call(f"run{i % runs}", i), topic=TOPIC).id for i in range(count)]


def published_ids(ledger: Ledger) -> set[str]:
    """Rows the relay is done with (past its cursor or marked one by one) that went to the events topic."""
    with ledger.transaction() as s:
        return set(s.scalars(select(OutboxEvent.event_id).where(
            not_(and_(*PENDING)), OutboxEvent.dead_lettered_at.is_(None))))


class FailsMidBatch(MemoryEventSink):
    """Acknowledges the first ``ok_in_failing_batch`` messages of batch number ``failing_batch``
    (1-based) and fails the rest as retryable, as a broker that went away mid-batch would."""

    def __init__(self, failing_batch: int, ok_in_failing_batch: int) -> None:
        super().__init__()
        self.failing_batch, self.ok_in_failing_batch = failing_batch, ok_in_failing_batch
        self.batches = 0

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        self.batches += 1
        if self.batches != self.failing_batch:
            return super().deliver(messages)
        ok = super().deliver(messages[: self.ok_in_failing_batch])
        return ok + [Delivery(m.event_id, "broker went away") for m in messages[self.ok_in_failing_batch :]]


def test_a_batch_failing_midway_marks_only_what_was_acknowledged_and_sends_nothing_after_it(
    ledger: Ledger,
) -> None:
    emitted = emit_calls(ledger, 100)
    sink = FailsMidBatch(failing_batch=2, ok_in_failing_batch=13)
    stats = OutboxRelay(ledger, sink).relay_until_idle(limit=20)
    # Batch 1 whole and batch 2 up to the failure went through. Batch 2's rest failed, the run of its
    # first failure (run1) deferred behind it; batch 3 was read ahead but never sent.
    assert sink.batches == 2
    assert [m.event_id for m in sink.messages] == emitted[:33]
    assert (stats.published, stats.failed, stats.deferred) == (33, 4, 3)  # each run waits behind its first failure
    assert published_ids(ledger) == set(emitted[:33])
    with ledger.transaction() as s:
        assert pending_count(s) == 67
    sink.failing_batch = 0  # the broker is back: the rest goes, in order, once
    again = OutboxRelay(ledger, sink).relay_until_idle(limit=20)
    assert again.healthy and again.published == 67
    assert [m.event_id for m in sink.messages] == emitted
    assert published_ids(ledger) == set(emitted)


class MarkFails(OutboxRelay):
    """A relay whose UPDATE of batch ``failing`` raises, as a Postgres connection lost mid-pass would."""

    def __init__(self, ledger: Ledger, sink: MemoryEventSink, failing: int) -> None:
        super().__init__(ledger, sink)
        self.failing, self.marks = failing, 0

    def _mark(self, marks: _Marks, frontier: _Frontier) -> None:
        self.marks += 1
        if self.marks == self.failing:
            raise ConnectionError("server closed the connection unexpectedly")
        super()._mark(marks, frontier)


def test_a_failed_update_stops_the_pass_and_its_rows_are_sent_again(ledger: Ledger) -> None:
    emitted = emit_calls(ledger, 100)
    sink = MemoryEventSink()
    with pytest.raises(ConnectionError):
        MarkFails(ledger, sink, failing=2).relay_until_idle(limit=20)
    # batch 2 reached the sink but is not marked: it stays pending, so nothing is lost
    assert published_ids(ledger) >= set(emitted[:20])
    assert not published_ids(ledger) & set(emitted[20:40])
    sent_once = len(sink.messages)
    assert sent_once < 100  # the failure stopped the pass within a batch or two
    again = OutboxRelay(ledger, sink).relay_until_idle(limit=20)
    assert again.healthy
    assert published_ids(ledger) == set(emitted)
    # at-least-once: every event arrived, the unmarked ones twice, and each run stays in order
    assert {m.event_id for m in sink.messages} == set(emitted)
    last_seen = {m.event_id: i for i, m in enumerate(sink.messages)}
    for run in range(4):
        ids = emitted[run::4]
        assert sorted(ids, key=last_seen.__getitem__) == ids


def test_two_relays_at_once_never_publish_an_event_twice(ledger: Ledger) -> None:
    sinks = [MemoryEventSink(), MemoryEventSink()]
    stop = threading.Event()
    errors: list[BaseException] = []

    def relay(sink: MemoryEventSink) -> None:
        try:
            relay = OutboxRelay(ledger, sink)
            while not stop.is_set():
                relay.relay_until_idle(limit=50)
        except BaseException as err:  # noqa: BLE001 - asserted below
            errors.append(err)

    threads = [threading.Thread(target=relay, args=(sink,)) for sink in sinks]
    for t in threads:
        t.start()
    emitted: list[str] = []
    for n in range(20):  # writers commit while both relays race for the lease
        with ledger.transaction() as s:
            emitted += [emit(s, call(f"run{i % 5}", n * 60 + i), topic=TOPIC).id for i in range(60)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with ledger.transaction() as s:
            if pending_count(s) == 0:
                break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors
    delivered = [m.event_id for sink in sinks for m in sink.messages]
    assert sorted(delivered) == sorted(emitted)  # each exactly once: the lease covers every UPDATE


class FreezesDuringBatch(KafkaEventSink):
    """A real Kafka sink whose broker freezes a few milliseconds into the third batch."""

    def __init__(self, bootstrap: str, pid: int) -> None:
        super().__init__(bootstrap, delivery_timeout_s=1.5)
        self.pid, self.batches = pid, 0
        self.freezer: threading.Timer | None = None

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        self.batches += 1
        if self.batches == 3:
            self.freezer = threading.Timer(0.003, os.kill, (self.pid, signal.SIGSTOP))
            self.freezer.start()
        return super().deliver(messages)


def test_a_broker_down_mid_pass_marks_only_acknowledged_rows(ledger: Ledger) -> None:
    # Frozen, not stopped: the test broker loses writes it acknowledged while shutting down
    # (tests/integration/test_events_kafka_outage.py says more).
    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-kafka-pipeline-")))
    broker.start()
    assert broker.proc is not None
    pid = broker.proc.pid
    try:
        create_topics(broker.bootstrap, [TOPIC], partitions=3)
        emitted = emit_calls(ledger, 6000)
        sink = FreezesDuringBatch(broker.bootstrap, pid)
        relay = OutboxRelay(ledger, sink)
        stats = relay.relay_until_idle(limit=500, max_seconds=60)
        assert sink.freezer is not None
        sink.freezer.join()
        published = published_ids(ledger)
        assert stats.failed > 0 and len(published) == stats.published < len(emitted)
        os.kill(pid, signal.SIGCONT)
        on_broker = {decode_event(r.value).id for r in read_kafka(broker.bootstrap, TOPIC, timeout_s=20)}
        assert published <= on_broker  # nothing marked published that the broker does not hold
        while relay.relay_until_idle(max_seconds=60).published:
            pass
        assert published_ids(ledger) == set(emitted)
        on_broker = {decode_event(r.value).id for r in read_kafka(broker.bootstrap, TOPIC, timeout_s=20)}
        assert on_broker == set(emitted)
        sink.close()
    finally:
        os.kill(pid, signal.SIGCONT)
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)
