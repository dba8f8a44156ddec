"""The relay sensor catches up with a broker slower than a step's in-step publish timeout.

A run's last event (``run.succeeded``, written by the close-out sensor) has no step left to publish
it: only the relay sensor does, with a fresh producer each tick. A fresh idempotent producer waits
about 0.5 s for its producer id before it sends anything (librdkafka retries the id request after
500 ms when no broker connection is up yet), so when the sensor used the steps' 1 s timeout, a
loaded machine timed its one message out tick after tick (``_MSG_TIMED_OUT``), and the deployment
test waited 90 s for an event that stayed in the outbox. Here the broker is frozen (SIGSTOP) for
longer than the in-step timeout, deterministically: the step's publish fails, the sensor's tick
delivers.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from tests.services import KafkaBroker, free_port
from wflo_core.events import RunSucceeded, TopicLayout, create_topics, decode_event, pending_count
from wflo_core.events.reader import read_kafka
from wflo_core.events.relay import IN_STEP_DELIVERY_TIMEOUT_S
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.ledger.migrations import upgrade
from wflo_dagster.resources.events import EventSinkResource
from wflo_dagster.sensors.outbox_relay import outbox_relay_sensor

pytestmark = pytest.mark.integration

FROZEN_S = IN_STEP_DELIVERY_TIMEOUT_S + 1.5
"""Longer than a step's publish may wait, far shorter than a catch-up's."""


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-kafka-slow-")))
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(broker.data_dir, ignore_errors=True)


class Frozen:
    """The broker answers nothing for ``FROZEN_S`` from entering the block (then runs again)."""

    def __init__(self, broker: KafkaBroker) -> None:
        assert broker.proc is not None
        self.pid = broker.proc.pid
        self.thaw = threading.Timer(FROZEN_S, os.kill, (self.pid, signal.SIGCONT))

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.thaw.start()

    def __exit__(self, *_: object) -> None:
        self.thaw.join()
        os.kill(self.pid, signal.SIGCONT)


def test_the_relay_sensor_delivers_what_the_in_step_publish_timed_out_on(
    broker: KafkaBroker, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = TopicLayout("slow")
    create_topics(broker.bootstrap, layout.all, partitions=1)
    upgrade(fresh_postgres_url)
    monkeypatch.setenv("WFLO_DATABASE_URL", fresh_postgres_url)
    monkeypatch.setenv("WFLO_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("WFLO_KAFKA_TOPIC_PREFIX", "slow")

    step = EventSinkResource()  # what a step's teardown and the close-out path use
    last = RunSucceeded(run_id="run-slow", workflow="wf", cost_usd=Decimal("0.25"))
    with Frozen(broker):
        step.emit(last)  # committed, then the in-step publish: a fresh producer, 1 s to deliver
    with step.ledger.transaction() as session:
        assert pending_count(session) == 1  # the broker was slower than a step may wait

    connected = []
    monkeypatch.setattr(KafkaEventSink, "connect", lambda sink: connected.append(sink))
    sensor = outbox_relay_sensor()
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, resources={"events": EventSinkResource()}) as context,
        Frozen(broker),
    ):
        result = sensor(context)  # one tick, its own fresh producer, the broker as slow as before
    assert isinstance(result, dg.SkipReason) and "published 1" in result.skip_message, result
    assert connected == []  # no producer connected ahead: the tick publishes through its catch-up's own
    with step.ledger.transaction() as session:
        assert pending_count(session) == 0
    records = list(read_kafka(broker.bootstrap, layout.events, max_records=1, timeout_s=20))
    assert [decode_event(r.value).type for r in records] == ["io.wflo.run.succeeded"]
    step.teardown_after_execution(None)  # type: ignore[arg-type]
