"""Events through a real Kafka-protocol broker: order per run, exact cost rebuild, dead letters."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy import func, select, update

from tests.conftest import REPO_ROOT
from tests.integration.jobs import publishing
from tests.services import free_port
from wflo_core.config import load_settings
from wflo_core.events import (
    CloudEvent,
    LLMCallSettled,
    OutboundMessage,
    OutboxRelay,
    RunStarted,
    RunSucceeded,
    StepStarted,
    StepSucceeded,
    TopicLayout,
    cost_by_run,
    create_topics,
    decode_event,
    emit,
    new_event,
    pending_count,
    unique_events,
)
from wflo_core.events.reader import read_kafka
from wflo_core.events.sinks import publish_breaker
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.ledger.models import LLMCall, OutboxCursor, OutboxEvent
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def layout(kafka_bootstrap: str) -> TopicLayout:
    layout = TopicLayout(f"t{uuid.uuid4().hex[:10]}")
    assert set(create_topics(kafka_bootstrap, layout.all, partitions=3)) == set(layout.all)
    assert create_topics(kafka_bootstrap, layout.all, partitions=3) == []  # idempotent
    return layout


@pytest.fixture
def ledger(postgres_ledger: Ledger) -> Ledger:
    return postgres_ledger


@pytest.fixture
def sink(kafka_bootstrap: str) -> Iterator[KafkaEventSink]:
    sink = KafkaEventSink(kafka_bootstrap, delivery_timeout_s=10)
    yield sink
    sink.close()


def read_events(bootstrap: str, topic: str) -> list[tuple[int, CloudEvent]]:
    return [(r.partition, decode_event(r.value)) for r in read_kafka(bootstrap, topic, timeout_s=20)]


def call(run_id: str, n: int, cost: Decimal) -> LLMCallSettled:
    return LLMCallSettled(
        run_id=run_id,
        step_key=f"step{n % 2}",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=100 + n,
        output_tokens=20,
        cost_usd=cost,
        price_version="v1",
        idempotency_key=f"{run_id}/{n}",
    )


def test_sink_keeps_a_runs_messages_on_one_partition_in_order(
    kafka_bootstrap: str, layout: TopicLayout, sink: KafkaEventSink
) -> None:
    events = [new_event(call(f"run{i % 4}", i, Decimal("0.01"))) for i in range(200)]
    deliveries = sink.deliver([OutboundMessage.of(e, layout.events) for e in events])
    assert all(d.ok for d in deliveries) and [d.event_id for d in deliveries] == [e.id for e in events]
    received = read_events(kafka_bootstrap, layout.events)
    assert len(received) == 200
    for run in ("run0", "run1", "run2", "run3"):
        mine = [(p, e) for p, e in received if e.run_id == run]
        assert len({p for p, _ in mine}) == 1
        assert [e.id for _, e in mine] == [e.id for e in events if e.run_id == run]


def test_a_sink_connected_at_a_steps_start_publishes_on_its_way_out_without_waiting(
    kafka_bootstrap: str, layout: TopicLayout
) -> None:
    """A fresh idempotent producer sends nothing before it holds a producer id: produced to at once it
    waits ~0.5 s, merely created ~1 s. Connected at the step's start, it is ready 0.5 s later, so messages
    that may wait only 0.4 s in the queue (0.9 s after it was created) are delivered."""
    step_sink = KafkaEventSink(kafka_bootstrap, delivery_timeout_s=0.4, connect=True)
    try:
        time.sleep(0.5)  # the step's own work
        events = [new_event(call("run-short-step", i, Decimal("0.01"))) for i in range(3)]
        deliveries = step_sink.deliver([OutboundMessage.of(e, layout.events) for e in events])
    finally:
        step_sink.close()
    assert [d.error for d in deliveries] == [None, None, None]
    assert {e.id for _, e in read_events(kafka_bootstrap, layout.events)} == {e.id for e in events}


def test_connecting_to_a_broker_that_is_down_neither_waits_nor_raises() -> None:
    started = time.monotonic()
    down = KafkaEventSink(f"127.0.0.1:{free_port()}", delivery_timeout_s=0.2, connect=True)  # nothing listens
    assert time.monotonic() - started < 2.0  # connect asks, and does not wait for an answer
    deliveries = down.deliver([OutboundMessage.of(new_event(StepStarted(run_id="r", step_key="s")), "t")])
    down.close()
    assert not deliveries[0].ok and not deliveries[0].permanent


def test_oversized_message_is_a_permanent_failure(layout: TopicLayout, kafka_bootstrap: str) -> None:
    sink = KafkaEventSink(kafka_bootstrap, max_message_bytes=5_000, delivery_timeout_s=5)
    huge = new_event(StepStarted(run_id="r", step_key="s", asset_key="a" * 6_000))
    small = new_event(StepStarted(run_id="r", step_key="t"))
    big_result, small_result = sink.deliver(
        [OutboundMessage.of(huge, layout.events), OutboundMessage.of(small, layout.events)]
    )
    sink.close()
    assert big_result.permanent and "MSG_SIZE_TOO_LARGE" in big_result.error
    assert small_result.ok


def test_a_runs_full_event_sequence_arrives_in_order(
    kafka_bootstrap: str, layout: TopicLayout, ledger: Ledger, sink: KafkaEventSink
) -> None:
    expected: dict[str, list[str]] = defaultdict(list)
    runs = [f"run-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    sequence = [
        lambda r: RunStarted(run_id=r, workflow="wf"),
        lambda r: StepStarted(run_id=r, step_key="plan"),
        *[lambda r, n=n: call(r, n, Decimal("0.002")) for n in range(5)],
        lambda r: StepSucceeded(run_id=r, step_key="plan", cost_usd=Decimal("0.01"), llm_calls=5),
        lambda r: RunSucceeded(run_id=r, workflow="wf", cost_usd=Decimal("0.01")),
    ]
    relay = OutboxRelay(ledger, sink)
    for i, make in enumerate(sequence):
        for run in runs:  # interleave the runs, one transaction per event, relaying as we go
            with ledger.transaction() as s:
                expected[run].append(emit(s, make(run), topic=layout.events).id)
        if i % 3 == 0:
            relay.relay_pending(limit=4)
    stats = relay.relay_until_idle()
    assert stats.healthy
    received = read_events(kafka_bootstrap, layout.events)
    for run in runs:
        assert [e.id for _, e in received if e.run_id == run] == expected[run]
        types = [e.type.removeprefix("io.wflo.") for _, e in received if e.run_id == run]
        assert types == [
            "run.started",
            "step.started",
            *["llm_call.settled"] * 5,
            "step.succeeded",
            "run.succeeded",
        ]


def test_consumer_rebuilds_each_runs_cost_from_events_alone(
    kafka_bootstrap: str, layout: TopicLayout, ledger: Ledger, sink: KafkaEventSink
) -> None:
    costs = [Decimal("0.0000001"), Decimal("0.0123456789"), Decimal("1.1"), Decimal("0.0000000003")]
    for i in range(60):
        run = f"r{i % 3}"
        cost = costs[i % len(costs)]
        with ledger.transaction() as s:  # the ledger row and its event commit together
            ledger.ensure_run(s, run, "wf")
            ledger.record_call(
                s,
                idempotency_key=f"{run}/{i}",
                run_id=run,
                provider="openai",
                model="gpt-4o-mini",
                status="settled",
                cost_usd=cost,
                price_version="v1",
            )
            emit(s, call(run, i, cost), topic=layout.events)
    relay = OutboxRelay(ledger, sink)
    assert relay.relay_pending(limit=25).published == 25
    relay.relay_pending(limit=25)
    with ledger.transaction() as s:  # the relay's cursor set back: what it relayed is delivered twice
        s.execute(update(OutboxCursor).values(relayed_through=0))
    assert relay.relay_until_idle().published == 60
    received = [e for _, e in read_events(kafka_bootstrap, layout.events)]
    assert len(received) == 110
    from_events = cost_by_run(unique_events(received))
    with ledger.transaction() as s:
        from_ledger = dict(
            s.execute(select(LLMCall.run_id, func.sum(LLMCall.cost_usd)).group_by(LLMCall.run_id)).all()
        )
    assert from_events == from_ledger
    assert sum(from_events.values()) == sum(costs) * 15


def test_undeliverable_event_goes_to_the_dead_letter_topic(
    kafka_bootstrap: str, layout: TopicLayout, ledger: Ledger
) -> None:
    sink = KafkaEventSink(kafka_bootstrap, max_message_bytes=8_000, delivery_timeout_s=10)
    with ledger.transaction() as s:
        before = emit(s, StepStarted(run_id="r", step_key="a"), topic=layout.events).id
        huge = emit(s, StepStarted(run_id="r", step_key="b", asset_key="x" * 9_000), topic=layout.events).id
        after = emit(s, StepStarted(run_id="r", step_key="c"), topic=layout.events).id
    stats = OutboxRelay(ledger, sink).relay_pending()
    sink.close()
    assert (stats.published, stats.dead_lettered, stats.failed) == (2, 1, 0)
    assert [e.id for _, e in read_events(kafka_bootstrap, layout.events)] == [before, after]
    [(_, dead)] = read_events(kafka_bootstrap, layout.events_dead_letter)
    record = dead.data_model()
    assert record.original_id == huge and "MSG_SIZE_TOO_LARGE" in record.reason
    with ledger.transaction() as s:
        assert pending_count(s) == 0
        assert "MSG_SIZE_TOO_LARGE" in s.scalar(
            select(OutboxEvent.last_error).where(OutboxEvent.event_id == huge)
        )


def test_steps_in_their_own_processes_publish_their_events_before_they_exit(
    kafka_bootstrap: str, ledger: Ledger, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step process builds its producer at the step's start, so a publish timeout shorter than a
    fresh producer's wait for its id (``publishing.PUBLISH_TIMEOUT_S``) still delivers: nothing is left
    for the relay sensor, and the publish breaker stays closed."""
    prefix = f"p{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix)
    create_topics(kafka_bootstrap, layout.all, partitions=1)
    monkeypatch.setenv("WFLO_DATABASE_URL", fresh_postgres_url)  # the database of ``ledger``
    monkeypatch.setenv("WFLO_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("WFLO_KAFKA_TOPIC_PREFIX", prefix)
    monkeypatch.chdir(REPO_ROOT)  # step processes re-import the job module from the working directory

    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(publishing.publishing_job), instance=instance)
    assert result.success
    with ledger.transaction() as session:
        assert pending_count(session) == 0
    received = [e for _, e in read_events(kafka_bootstrap, layout.events) if e.run_id == "publishing"]
    assert sorted(e.data["step_key"] for e in received) == ["first", "second"]
    assert not publish_breaker(load_settings()).is_open
