"""The contract every event sink keeps, as one mixin run against each backend (memory, JSONL, Kafka).

A backend's test class provides the ``sink`` fixture (accepting messages up to ``LIMIT`` bytes), a
``topic`` fixture and ``read_back(topic)``: the values the backend durably holds for that topic, in
the order a consumer of one partition key would see them.
"""

from __future__ import annotations

import json
from decimal import Decimal

from wflo_core.events import EventSink, LLMCallSettled, OutboundMessage, OutboxRelay, emit, new_event
from wflo_core.events.sinks.base import Delivery
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.store import Ledger

LIMIT = 4_000
"""Message size limit each backend's sink is configured with."""


def settled(n: int, *, padding: int = 0) -> LLMCallSettled:
    return LLMCallSettled(run_id="run-c", step_key="s" * padding or None, provider="openai", model="m",
                          cost_usd=Decimal("0.001"), price_version="v", idempotency_key=f"c-{n}")


def message(topic: str, n: int, *, padding: int = 0) -> OutboundMessage:
    return OutboundMessage.of(new_event(settled(n, padding=padding)), topic)


class SinkContract:
    def read_back(self, topic: str) -> list[bytes]:
        raise NotImplementedError

    def test_delivers_a_batch_in_order_one_report_per_message(self, sink: EventSink, topic: str) -> None:
        batch = [message(topic, n) for n in range(20)]
        deliveries = sink.deliver(batch)
        assert [d.event_id for d in deliveries] == [m.event_id for m in batch]
        assert all(d.ok and d.error is None for d in deliveries)
        assert self.read_back(topic) == [m.value for m in batch]

    def test_the_reports_read_as_a_list_does(self, sink: EventSink, topic: str) -> None:
        """However a sink holds its reports (Kafka's are made as they are read), they index, slice,
        compare and read again as the list of one Delivery per message would."""
        batch = [message(topic, n) for n in range(5)]
        deliveries = sink.deliver(batch)
        expected = [Delivery(m.event_id) for m in batch]
        assert len(deliveries) == 5 and deliveries == expected
        assert list(deliveries) == expected and list(deliveries) == expected  # a second read sees them all
        assert deliveries[-1] == expected[-1] and list(deliveries[1:3]) == expected[1:3]

    def test_an_empty_batch_is_no_work(self, sink: EventSink, topic: str) -> None:
        assert sink.deliver([]) == []
        assert self.read_back(topic) == []

    def test_an_oversized_message_fails_permanently_and_alone(self, sink: EventSink, topic: str) -> None:
        big = message(topic, 1, padding=LIMIT)
        batch = [message(topic, 0), big, message(topic, 2)]
        deliveries = sink.deliver(batch)
        assert [d.ok for d in deliveries] == [True, False, True]
        assert deliveries[1].permanent and deliveries[1].event_id == big.event_id and deliveries[1].error
        assert self.read_back(topic) == [batch[0].value, batch[2].value]

    def test_the_same_event_twice_is_reported_twice(self, sink: EventSink, topic: str) -> None:
        again = message(topic, 7)
        assert [d.ok for d in sink.deliver([again, again])] == [True, True]
        assert len(self.read_back(topic)) == 2  # at-least-once: consumers dedupe by event id

    def test_relayed_events_carry_an_ordered_sequence(self, sink: EventSink, topic: str, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'contract.db'}"
        upgrade(url)
        with Ledger(url) as ledger:
            with ledger.transaction() as s:
                ids = [emit(s, settled(n), topic=topic).id for n in range(12)]
            assert OutboxRelay(ledger, sink).relay_until_idle(limit=5).published == 12
        events = [json.loads(v) for v in self.read_back(topic)]
        assert [e["id"] for e in events] == ids
        sequences = [e["sequence"] for e in events]
        assert sequences == sorted(sequences) and len(set(map(len, sequences))) == 1


