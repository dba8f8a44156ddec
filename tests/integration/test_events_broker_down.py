"""A stopped broker never slows a step: the first failed in-step publish opens the publish breaker,
every later step (in any process on the host) skips its relay without touching the broker, and the
catch-up relay publishes everything once the broker is back, closing the breaker again."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from tests.services import KafkaBroker, free_port
from wflo_core.config import load_settings
from wflo_core.events import Delivery, LLMCallSettled, OutboundMessage, TopicLayout, create_topics, emit
from wflo_core.events.reader import read_kafka
from wflo_core.events.relay import IN_STEP_DELIVERY_TIMEOUT_S, relay_catch_up, relay_in_step
from wflo_core.events.sinks import publish_breaker
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.ledger import open_ledger

pytestmark = pytest.mark.integration


class CountingSink:
    """The real Kafka sink, counting the deliveries attempted through it."""

    def __init__(self, inner: KafkaEventSink) -> None:
        self.inner, self.attempts = inner, 0

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        self.attempts += 1
        return self.inner.deliver(messages)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-kafka-down-")))
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(broker.data_dir, ignore_errors=True)


ANOTHER_STEP = """
import json
from wflo_core.config import load_settings
from wflo_core.events.relay import IN_STEP_DELIVERY_TIMEOUT_S, relay_in_step
from wflo_core.events.sinks import build_event_sink, publish_breaker
from wflo_core.ledger import open_ledger
settings = load_settings()
sink = build_event_sink(settings, delivery_timeout_s=IN_STEP_DELIVERY_TIMEOUT_S)
with open_ledger(settings) as ledger:
    stats = relay_in_step(ledger, sink, publish_breaker(settings))
print(json.dumps({"skipped": stats.skipped, "producer_built": sink._producer is not None}))
"""


def step(n: int) -> LLMCallSettled:
    return LLMCallSettled(run_id="run-down", provider="openai", model="m", cost_usd=Decimal("0.001"),
                          price_version="v", idempotency_key=f"call-{n}")


def test_steps_skip_the_relay_while_the_broker_is_down_and_nothing_is_lost(
    broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    layout = TopicLayout("down")
    create_topics(broker.bootstrap, layout.all, partitions=1)
    monkeypatch.setenv("WFLO_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("WFLO_KAFKA_TOPIC_PREFIX", "down")
    settings = load_settings()
    breaker = publish_breaker(settings)
    emitted = []
    broker.stop()
    with open_ledger(settings) as ledger:
        # The first step's publish fails (within the short in-step timeout) and opens the breaker.
        with ledger.transaction() as s:
            emitted.append(emit(s, step(0), topic=layout.events).id)
        first = CountingSink(KafkaEventSink(broker.bootstrap, delivery_timeout_s=IN_STEP_DELIVERY_TIMEOUT_S))
        stats = relay_in_step(ledger, first, breaker)
        assert (first.attempts, stats.failed, stats.skipped) == (1, 1, False) and breaker.is_open
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="wflo.events.kafka"):
            time.sleep(1.5)  # a producer left open reconnects (100 ms backoff, doubling), logging each refusal
            first.close()  # what the step's teardown does: it would serve those logs
        assert [r.getMessage() for r in caplog.records if r.name == "wflo.events.kafka"] == []

        # Later steps in this process: the relay is not attempted at all.
        later = CountingSink(KafkaEventSink(broker.bootstrap, delivery_timeout_s=IN_STEP_DELIVERY_TIMEOUT_S))
        for n in range(1, 4):
            with ledger.transaction() as s:
                emitted.append(emit(s, step(n), topic=layout.events).id)
            assert relay_in_step(ledger, later, breaker).skipped
        assert later.attempts == 0

        # Steps in other processes see the same breaker and build no producer.
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", ANOTHER_STEP], capture_output=True, text=True, check=True)
            assert json.loads(done.stdout) == {"skipped": True, "producer_built": False}

        # The broker is back: the catch-up relay publishes every event and closes the breaker.
        broker.start()
        sink = KafkaEventSink(broker.bootstrap)
        caught_up = relay_catch_up(ledger, sink, breaker)
        sink.close()
        first.close()
        later.close()
    assert caught_up.published == 4 and caught_up.healthy and not breaker.is_open
    received = {json.loads(r.value)["id"] for r in read_kafka(broker.bootstrap, layout.events, timeout_s=30)}
    assert set(emitted) <= received


def test_a_failed_catch_up_opens_the_breaker_so_steps_do_not_try(broker: KafkaBroker, tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap_servers=broker.bootstrap, kafka_topic_prefix="down2")
    breaker = publish_breaker(settings)
    create_topics(broker.bootstrap, TopicLayout("down2").all, partitions=1)
    broker.stop()
    with open_ledger(settings) as ledger:
        with ledger.transaction() as s:
            emit(s, step(9), topic=TopicLayout("down2").events)
        sink = CountingSink(KafkaEventSink(broker.bootstrap, delivery_timeout_s=IN_STEP_DELIVERY_TIMEOUT_S))
        assert relay_catch_up(ledger, sink, breaker, max_seconds=5).failed == 1
        assert breaker.is_open
        assert relay_in_step(ledger, sink, breaker).skipped and sink.attempts == 1
        sink.close()


def test_a_sink_that_connected_ahead_fails_at_once_while_no_broker_answers(broker: KafkaBroker) -> None:
    """A step's sink connects when the step starts; if the producer finds every broker down by the time
    the step publishes, the batch fails at once (the breaker then opens) instead of waiting out the
    delivery timeout, and once the broker is back the same sink delivers again."""
    create_topics(broker.bootstrap, ["down3"], partitions=1)
    broker.stop()
    sink = KafkaEventSink(broker.bootstrap, delivery_timeout_s=10, connect=True)
    message = OutboundMessage("down3", "run-down", b'{"n": 1}', "event-1")
    time.sleep(0.5)  # the step's own work
    started = time.monotonic()
    refused, = sink.deliver([message])
    took = time.monotonic() - started
    assert took < 3 and not refused.ok and not refused.permanent  # 10 s and more had it waited
    assert refused.error is not None and refused.error.startswith("Kafka unreachable: _ALL_BROKERS_DOWN")

    broker.start()
    delivered, = sink.deliver([message._replace(event_id="event-2")])
    sink.close()
    assert delivered.ok, delivered
