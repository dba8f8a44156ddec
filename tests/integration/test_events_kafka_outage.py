"""Broker down mid-stream and back later: nothing lost, exactly once after dedupe by id.

The outage is a frozen broker (SIGSTOP, then SIGCONT): the test broker (noida-db) acknowledges produce
requests while it shuts down on SIGTERM and loses them, and loses acknowledged writes on SIGKILL
(both seen here: rows acknowledged, marked published, absent after the restart). A frozen broker
answers nothing, so the test measures the relay, not the broker's durability.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.services import KafkaBroker, free_port
from wflo_core.events import (
    LLMCallSettled,
    OutboxRelay,
    RelayStats,
    TopicLayout,
    create_topics,
    decode_event,
    emit,
    pending_count,
    unique_events,
)
from wflo_core.events.reader import read_kafka
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-kafka-outage-")))
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(broker.data_dir, ignore_errors=True)


def test_broker_outage_loses_nothing_and_never_fails_the_producer(
    broker: KafkaBroker, fresh_postgres_url: str
) -> None:
    layout = TopicLayout("outage")
    create_topics(broker.bootstrap, layout.all, partitions=3)
    upgrade(fresh_postgres_url)
    ledger = Ledger(fresh_postgres_url)
    sink = KafkaEventSink(broker.bootstrap, delivery_timeout_s=1.5)
    relay = OutboxRelay(ledger, sink)
    emitted: list[str] = []
    producer_errors: list[BaseException] = []
    relay_stats: list[RelayStats] = []
    stop = threading.Event()

    def run_steps() -> None:
        # Stands in for steps settling LLM calls: ledger write + outbox event, then a best-effort relay.
        try:
            for i in range(240):
                with ledger.transaction() as s:
                    emitted.append(
                        emit(
                            s,
                            LLMCallSettled(
                                run_id=f"run{i % 4}",
                                provider="openai",
                                model="m",
                                cost_usd=Decimal("0.001"),
                                price_version="v",
                                idempotency_key=f"call-{i}",
                            ),
                            topic=layout.events,
                        ).id
                    )
                time.sleep(0.02)
        except BaseException as err:  # noqa: BLE001 - the assertion below reports it
            producer_errors.append(err)

    def relay_loop() -> None:
        while not stop.is_set():
            relay_stats.append(relay.relay_pending(limit=50))
            stop.wait(0.05)

    steps = threading.Thread(target=run_steps)
    relayer = threading.Thread(target=relay_loop)
    steps.start()
    relayer.start()
    while len(emitted) < 60:
        time.sleep(0.01)
    os.kill(broker.proc.pid, signal.SIGSTOP)  # down mid-stream: no answers, no acknowledgements
    while len(emitted) < 180:
        time.sleep(0.01)
    os.kill(broker.proc.pid, signal.SIGCONT)  # back later
    steps.join(60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with ledger.transaction() as s:
            if pending_count(s) == 0:
                break
        time.sleep(0.2)
    stop.set()
    relayer.join(30)

    assert producer_errors == [] and len(emitted) == 240
    assert sum(s.failed for s in relay_stats) > 0, "the relay never saw the outage"
    with ledger.transaction() as s:
        assert pending_count(s) == 0
    received = [decode_event(r.value) for r in read_kafka(broker.bootstrap, layout.events, timeout_s=30)]
    unique = list(unique_events(received))
    assert len(unique) == len(emitted)
    assert sorted(e.id for e in unique) == sorted(emitted)
    for k in range(4):  # first arrivals keep each run's order
        assert [e.id for e in unique if e.run_id == f"run{k}"] == emitted[k::4]
    sink.close()
    ledger.close()
