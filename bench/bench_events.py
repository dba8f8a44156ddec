"""Event throughput: KafkaEventSink vs a raw confluent-kafka Producer, and outbox relay rate.

Starts its own Kafka-protocol broker (tests/services.py), then in the same run:
1. raw: ``confluent_kafka.Producer`` with the sink's exact settings (idempotent, acks=all, zstd,
   same linger), a delivery callback checking every report, one flush at the end;
2. sink: ``KafkaEventSink.deliver`` on the same pre-encoded messages (one call; and in relay-sized
   batches of 500, which adds a flush per batch).
Rounds alternate raw/sink and the best round of each counts. Goal: sink >= 0.8x raw.
3. relay: events already committed to the outbox (SQLite and Postgres ledgers) relayed to Kafka.

Run: .venv/bin/python bench/bench_events.py [--events 100000] [--relay-events 20000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Producer  # noqa: E402

from tests.services import KafkaBroker, free_port, start_postgres  # noqa: E402
from wflo_core.events import (  # noqa: E402
    LLMCallSettled,
    OutboundMessage,
    OutboxRelay,
    create_topics,
    emit,
    new_event,
)
from wflo_core.events.sinks.kafka import KafkaEventSink, producer_config  # noqa: E402
from wflo_core.ledger.migrations import upgrade  # noqa: E402
from wflo_core.ledger.store import Ledger  # noqa: E402


def sample(i: int) -> LLMCallSettled:
    return LLMCallSettled(
        run_id=f"run-{i % 64}",
        step_key="summarize",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1200 + i % 100,
        output_tokens=300,
        cost_usd=Decimal("0.000243"),
        price_version="genai-prices@0.2.3",
        idempotency_key=f"bench-{i}",
        latency_ms=420,
    )


def raw_rate(bootstrap: str, messages: list[OutboundMessage]) -> float:
    producer = Producer(producer_config(bootstrap))
    errors = 0

    def on_delivery(err, _msg) -> None:
        nonlocal errors
        if err is not None:
            errors += 1

    started = time.perf_counter()
    for m in messages:
        while True:
            try:
                producer.produce(m.topic, m.value, m.key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(60)
    elapsed = time.perf_counter() - started
    assert errors == 0 and left == 0, (errors, left)
    return len(messages) / elapsed


def sink_rate(bootstrap: str, messages: list[OutboundMessage], batch: int) -> float:
    sink = KafkaEventSink(bootstrap)
    sink.deliver([])  # builds the producer outside the timed part, as raw_rate does
    started = time.perf_counter()
    for i in range(0, len(messages), batch):
        bad = [d for d in sink.deliver(messages[i : i + batch]) if not d.ok]
        assert not bad, (len(bad), bad[:3])
    elapsed = time.perf_counter() - started
    sink.close()
    return len(messages) / elapsed


def relay_rate(url: str, bootstrap: str, topic: str, count: int) -> tuple[float, float]:
    upgrade(url)
    ledger = Ledger(url)
    started = time.perf_counter()
    for start in range(0, count, 100):
        with ledger.transaction() as s:
            for i in range(start, min(start + 100, count)):
                emit(s, sample(i), topic=topic)
    emit_rate = count / (time.perf_counter() - started)
    sink = KafkaEventSink(bootstrap)
    relay = OutboxRelay(ledger, sink)
    started = time.perf_counter()
    moved = 0
    while moved < count:
        stats = relay.relay_until_idle(limit=1000, max_seconds=120)
        assert stats.healthy, stats
        moved += stats.published
    rate = count / (time.perf_counter() - started)
    sink.close()
    ledger.close()
    return emit_rate, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--relay-events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-bench-kafka-")))
    broker.start()
    postgres = None
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topics(broker.bootstrap, [topic], partitions=3)
        messages = [OutboundMessage.of(new_event(sample(i)), topic) for i in range(args.events)]
        size = sum(len(m.value) for m in messages) / len(messages)
        print(f"{args.events} events of ~{size:.0f} bytes, broker {broker.bootstrap}")
        raw, one_batch, relay_batches = [], [], []
        for _ in range(args.rounds):
            raw.append(raw_rate(broker.bootstrap, messages))
            one_batch.append(sink_rate(broker.bootstrap, messages, len(messages)))
            relay_batches.append(sink_rate(broker.bootstrap, messages, 500))
        print(f"raw confluent-kafka Producer : {max(raw):>10,.0f} events/s")
        print(
            f"KafkaEventSink, one batch    : {max(one_batch):>10,.0f} events/s  "
            f"ratio {max(one_batch) / max(raw):.2f}x (goal >= 0.8x)"
        )
        print(
            f"KafkaEventSink, batches of 500: {max(relay_batches):>9,.0f} events/s  "
            f"ratio {max(relay_batches) / max(raw):.2f}x"
        )

        sqlite_dir = Path(tempfile.mkdtemp(prefix="wflo-bench-ledger-"))
        emit_s, relay_s = relay_rate(
            f"sqlite:///{sqlite_dir / 'ledger.db'}", broker.bootstrap, topic + "-sqlite", args.relay_events
        )
        print(f"outbox (SQLite)   : emit {emit_s:>8,.0f} events/s, relay {relay_s:>8,.0f} events/s")
        shutil.rmtree(sqlite_dir, ignore_errors=True)
        postgres = start_postgres()
        emit_p, relay_p = relay_rate(
            postgres.url.replace("postgresql://", "postgresql+psycopg://"),
            broker.bootstrap,
            topic + "-pg",
            args.relay_events,
        )
        print(f"outbox (Postgres) : emit {emit_p:>8,.0f} events/s, relay {relay_p:>8,.0f} events/s")
    finally:
        if postgres is not None:
            postgres.stop()
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
