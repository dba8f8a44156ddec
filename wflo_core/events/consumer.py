"""Helpers for consumers: at-least-once delivery becomes exactly-once by deduping on event id.

Redelivery happens (a relay retried after a timeout that had in fact succeeded; a trigger message
read again after a crash), so every consumer should drop ids it has already seen.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal

from wflo_core.errors import EventError
from wflo_core.events.envelope import CloudEvent, decode_event
from wflo_core.events.reader import Record
from wflo_core.events.schemas import LLMCallCacheHit, LLMCallSettled


class EventDeduplicator:
    """Remembers the last ``capacity`` event ids seen (bounded memory for a long-running consumer)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is offered, False for every repeat still remembered."""
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


def unique_events(
    events: Iterable[CloudEvent], dedup: EventDeduplicator | None = None
) -> Iterator[CloudEvent]:
    dedup = dedup or EventDeduplicator()
    return (e for e in events if dedup.first_time(e.id))


def decode_records(records: Iterable[Record]) -> Iterator[CloudEvent | EventError]:
    """Decode each record; a malformed one yields its ``EventError`` (with the position) instead."""
    for record in records:
        try:
            yield decode_event(record.value)
        except EventError as err:
            yield EventError(f"{record.position}: {err}", position=record.position)


def cost_by_run(events: Iterable[CloudEvent]) -> dict[str, Decimal]:
    """Each run's LLM spend rebuilt from its (deduplicated) call events alone, in delivery order.

    An attempt first charged at its bound (``estimated``) and settled later has two events; the
    later one replaces the earlier, as it did in the ledger.
    """
    latest: dict[tuple[str, str], Decimal] = {}
    for event in events:
        if event.type in (LLMCallSettled.type, LLMCallCacheHit.type):
            data = event.data_model()
            assert isinstance(data, LLMCallSettled | LLMCallCacheHit)
            latest[(data.run_id, data.idempotency_key)] = data.cost_usd
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for (run_id, _), cost in latest.items():
        totals[run_id] += cost
    return dict(totals)
