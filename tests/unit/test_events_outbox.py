"""The outbox commits with the ledger change and the relay keeps per-run order through outages."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from wflo_core.config import load_settings
from wflo_core.errors import LedgerError
from wflo_core.events import (
    LLMCallSettled,
    MemoryEventSink,
    OutboxRelay,
    StepStarted,
    pending_count,
)
from wflo_core.events.lease import relay_lease
from wflo_core.events.outbox import DEFAULT_RECORDER as record_event
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import LLMCall, OutboxCursor, OutboxEvent
from wflo_core.ledger.store import Ledger
from wflo_core.services import shared_services


@pytest.fixture
def ledger() -> Ledger:
    url = load_settings().ledger_url
    upgrade(url)
    ledger = Ledger(url)
    yield ledger
    ledger.close()


def settled(run_id: str, n: int, cost: str = "0.001") -> LLMCallSettled:
    return LLMCallSettled(
        run_id=run_id,
        step_key="s",
        provider="openai",
        model="m",
        cost_usd=Decimal(cost),
        price_version="v",
        idempotency_key=f"{run_id}/{n}",
    )


def test_event_commits_with_the_ledger_change_and_rolls_back_with_it(ledger: Ledger) -> None:
    with ledger.transaction() as s:
        ledger.ensure_run(s, "r1", "wf")
        ledger.record_call(
            s,
            idempotency_key="r1/1",
            run_id="r1",
            provider="openai",
            model="m",
            status="settled",
            cost_usd=Decimal("0.001"),
            price_version="v",
        )
        event = record_event(s, settled("r1", 1))
    with pytest.raises(LedgerError), ledger.transaction() as s:
        record_event(s, settled("r1", 2))
        ledger.record_call(
            s,
            idempotency_key="r1/2",
            run_id="missing-run",
            provider="openai",
            model="m",
            status="settled",
            cost_usd=Decimal("0.001"),
            price_version="v",
        )
    with ledger.transaction() as s:
        rows = s.scalars(select(OutboxEvent)).all()
        assert s.scalar(select(LLMCall.idempotency_key)) == "r1/1"
    assert [r.event_id for r in rows] == [event.id]
    assert rows[0].topic == "wflo.events" and rows[0].key == "r1"
    assert json.loads(rows[0].payload)["data"]["cost_usd"] == "0.001"


def test_emitting_the_same_fact_twice_queues_it_once(ledger: Ledger) -> None:
    with ledger.transaction() as s:
        record_event(s, settled("r1", 1))
        record_event(s, settled("r1", 1))
    with ledger.transaction() as s:
        assert pending_count(s) == 1


def test_topic_follows_the_configured_prefix(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFLO_KAFKA_TOPIC_PREFIX", "acme")
    with shared_services(load_settings()) as services, services.ledger.transaction() as s:
        services.record_event(s, settled("r1", 1))
        assert s.scalar(select(OutboxEvent.topic)) == "acme.events"


def test_relay_publishes_in_id_order_and_moves_its_cursor_past_them(ledger: Ledger) -> None:
    sink = MemoryEventSink()
    with ledger.transaction() as s:
        ids = [record_event(s, settled(f"r{i % 3}", i)).id for i in range(30)]
    stats = OutboxRelay(ledger, sink).relay_pending(limit=100)
    assert (stats.published, stats.failed, stats.deferred) == (30, 0, 0)
    assert [m.event_id for m in sink.messages] == ids
    assert [m.key for m in sink.messages[:3]] == ["r0", "r1", "r2"]
    with ledger.transaction() as s:
        assert pending_count(s) == 0
        assert s.scalar(select(OutboxCursor.relayed_through)) == s.scalar(select(func.max(OutboxEvent.id)))
        # the relayed rows themselves are not rewritten
        assert set(s.execute(select(OutboxEvent.published_at, OutboxEvent.attempts))) == {(None, 0)}
    assert OutboxRelay(ledger, sink).relay_pending().published == 0


def test_outage_loses_nothing_and_keeps_each_runs_order(ledger: Ledger) -> None:
    sink = MemoryEventSink()
    relay = OutboxRelay(ledger, sink)
    with ledger.transaction() as s:
        first = [record_event(s, settled("a", i)).id for i in range(5)]
    sink.available = False
    down = relay.relay_pending()
    assert (down.published, down.failed, down.deferred) == (0, 1, 4)  # the rest of run a waits behind it
    with ledger.transaction() as s:
        second = [record_event(s, settled("a", i)).id for i in range(5, 8)]
        assert pending_count(s) == 8
        assert (
            s.scalar(select(OutboxEvent.last_error).where(OutboxEvent.event_id == first[0]))
            == "sink unavailable"
        )
    sink.available = True
    up = relay.relay_until_idle(limit=3)
    assert up.published == 8 and up.healthy
    assert [m.event_id for m in sink.messages] == first + second


def test_undeliverable_event_is_dead_lettered_with_the_reason_and_does_not_block_its_run(
    ledger: Ledger,
) -> None:
    sink = MemoryEventSink(max_message_bytes=3_000)
    with ledger.transaction() as s:
        before = record_event(s, settled("r", 1)).id
        huge = record_event(s, StepStarted(run_id="r", step_key="x" * 255, asset_key="y" * 3000)).id
        after = record_event(s, settled("r", 2)).id
    stats = OutboxRelay(ledger, sink).relay_pending()
    assert (stats.published, stats.dead_lettered, stats.failed) == (2, 1, 0)
    assert [m.event_id for m in sink.messages if m.topic == "wflo.events"] == [before, after]
    [dead] = sink.events("wflo.events.dlq")
    data = dead.data_model()
    assert data.original_id == huge and data.original_type == "io.wflo.step.started"
    assert "exceeds the 3000-byte limit" in data.reason and data.payload_bytes > 3_000
    assert len(data.payload_excerpt) == 1024
    with ledger.transaction() as s:
        row = s.scalar(select(OutboxEvent).where(OutboxEvent.event_id == huge))
        assert row.dead_lettered_at is not None and row.published_at is None
        assert "exceeds" in row.last_error
        assert pending_count(s) == 0


def test_only_one_relay_holds_the_lease(ledger: Ledger) -> None:
    with relay_lease(ledger) as first:
        assert first
        with relay_lease(ledger) as second:
            assert not second
        assert OutboxRelay(ledger, MemoryEventSink()).relay_pending().busy
    with relay_lease(ledger) as again:
        assert again


def test_lease_file_sits_next_to_the_sqlite_ledger(ledger: Ledger) -> None:
    with relay_lease(ledger):
        pass
    assert Path(f"{ledger.engine.url.database}.relay.lock").exists()
