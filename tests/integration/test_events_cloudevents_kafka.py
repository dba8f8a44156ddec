"""wflo's Kafka topic read the way a spec-following consumer reads it: the event sink contract on the
Kafka sink, and the official CloudEvents SDK's Kafka binding ordering a run's events by ``sequence``."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cloudevents.kafka import KafkaMessage, from_binary, from_structured
from confluent_kafka import Consumer

from tests.sink_contract import LIMIT, SinkContract
from wflo_core.events import LLMCallSettled, OutboxRelay, create_topics, emit, new_event
from wflo_core.events.reader import read_kafka
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration


class TestKafkaSink(SinkContract):
    @pytest.fixture
    def topic(self, kafka_bootstrap: str) -> str:
        name = f"contract-{uuid.uuid4().hex[:8]}"
        create_topics(kafka_bootstrap, [name], partitions=1)
        self.bootstrap = kafka_bootstrap
        return name

    @pytest.fixture
    def sink(self, kafka_bootstrap: str) -> Iterator[KafkaEventSink]:
        sink = KafkaEventSink(kafka_bootstrap, max_message_bytes=LIMIT)
        yield sink
        sink.close()

    def read_back(self, topic: str) -> list[bytes]:
        return [r.value for r in read_kafka(self.bootstrap, topic, timeout_s=10)]


def consume(bootstrap: str, topic: str, count: int) -> list[KafkaMessage]:
    """Raw records as the SDK's ``KafkaMessage``: headers, key and value as the broker holds them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ce-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found: list[KafkaMessage] = []
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while len(found) < count and datetime.now(UTC) < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            found.append(KafkaMessage(dict(msg.headers() or []), msg.key(), msg.value()))
    finally:
        consumer.close()
    return found


def test_a_cloudevents_sdk_consumer_reads_structured_events_and_orders_a_run_by_sequence(
    kafka_bootstrap: str, fresh_postgres_url: str
) -> None:
    topic = f"ce-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [topic], partitions=3)
    upgrade(fresh_postgres_url)
    committed: list[str] = []  # the happened-before order: each event is emitted after the last committed
    lock = threading.Lock()

    def writer(clock_skew: timedelta, turns: list[int], turn: list[int]) -> None:
        # Two writers take turns; writer B's clock runs 5 s behind, so ``time`` misorders the run.
        with Ledger(fresh_postgres_url) as ledger:
            for n in turns:
                while turn[0] != n:
                    threading.Event().wait(0.001)
                event = new_event(LLMCallSettled(run_id="run-ce", provider="openai", model="m",
                                                 cost_usd=Decimal("0.001"), price_version="v",
                                                 idempotency_key=f"ce-{n}"),
                                  time=datetime.now(UTC) + clock_skew)
                with ledger.transaction() as s:
                    emit(s, event, topic=topic)
                with lock:
                    committed.append(event.id)
                    turn[0] += 1

    turn = [0]
    writers = [threading.Thread(target=writer, args=(timedelta(0), list(range(0, 12, 2)), turn)),
               threading.Thread(target=writer, args=(timedelta(seconds=-5), list(range(1, 12, 2)), turn))]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    with Ledger(fresh_postgres_url) as ledger:
        sink = KafkaEventSink(kafka_bootstrap)
        assert OutboxRelay(ledger, sink).relay_until_idle().published == 12
        sink.close()

    events = []
    for message in consume(kafka_bootstrap, topic, 12):
        # The binding's mode rule: a content-type of application/cloudevents... means structured mode.
        content_type = message.headers.get("content-type", b"").decode()
        assert content_type == "application/cloudevents+json; charset=UTF-8"
        events.append(from_structured(message) if content_type.startswith("application/cloudevents")
                      else from_binary(message))
    assert len(events) == 12
    assert {e["partitionkey"] for e in events} == {"run-ce"} and {e["source"] for e in events} == {"/wflo"}
    assert all(e["type"] == "io.wflo.llm_call.settled" and e.data["run_id"] == "run-ce" for e in events)
    by_sequence = [e["id"] for e in sorted(events, key=lambda e: e["sequence"])]
    by_time = [e["id"] for e in sorted(events, key=lambda e: e["time"])]
    assert by_sequence == committed
    assert by_time != committed  # what a consumer ordering by ``time`` would get wrong
