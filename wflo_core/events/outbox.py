"""The transactional outbox: an event is committed in the same transaction as the ledger change.

``emit(session, event)`` inserts the encoded CloudEvent into the ``outbox`` table using the
caller's session, so the event exists exactly when the change does: a rollback drops both, and a
broker outage cannot lose it. :class:`~wflo_core.events.relay.OutboxRelay` publishes it later.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Insert, func, select
from sqlalchemy.orm import Session

from wflo_core.events.envelope import DEFAULT_SOURCE, CloudEvent, encode_event, encode_new_event, new_event
from wflo_core.events.schemas import EventData
from wflo_core.events.topics import TopicLayout
from wflo_core.ledger.models import OutboxCursor, OutboxEvent, utcnow

RELAYED_THROUGH = select(func.coalesce(func.max(OutboxCursor.relayed_through), 0)).scalar_subquery()
"""The relay's cursor: every row up to this id is relayed (0 before the first relay)."""
PENDING = (OutboxEvent.id > RELAYED_THROUGH, OutboxEvent.published_at.is_(None),
           OutboxEvent.dead_lettered_at.is_(None))
"""Rows still to relay: past the relay's cursor, and neither published nor dead-lettered ahead of it."""


def emit(
    session: Session,
    event: EventData | CloudEvent,
    *,
    topic: str,
    source: str = DEFAULT_SOURCE,
) -> CloudEvent:
    """Queue ``event`` in the caller's transaction; never talks to Kafka, so it never fails for it.

    Emitting the same event id twice is a no-op (events with a natural identity, e.g. a call's
    idempotency key, get a deterministic id).
    """
    cloud_event = event if isinstance(event, CloudEvent) else new_event(event, source=source)
    row = outbox_row(cloud_event, topic=topic)
    connection = session.connection()  # the caller's transaction
    if connection.dialect.name == "postgresql":
        # One INSERT on the driver's cursor: the statement text never changes, so psycopg prepares
        # it once per connection, and SQLAlchemy's per-execute work (half of emit's own cost) is skipped.
        cursor = connection.connection.cursor()
        try:
            cursor.execute(_INSERT_PG, row)
        finally:
            cursor.close()
    else:
        connection.execute(_insert_for(connection.dialect.name), row)
    return cloud_event


_INSERT_PG = (
    "INSERT INTO outbox (event_id, event_type, topic, key, payload, created_at, attempts) VALUES"
    " (%(event_id)s, %(event_type)s, %(topic)s, %(key)s, %(payload)s, %(created_at)s, %(attempts)s)"
    " ON CONFLICT (event_id) DO NOTHING"
)


def outbox_row(cloud_event: CloudEvent, *, topic: str) -> dict[str, Any]:
    """The ``outbox`` row that queues ``cloud_event``: what ``emit`` inserts, for a statement that writes
    a ledger change and its events at once."""
    return {
        "event_id": cloud_event.id,
        "event_type": cloud_event.type,
        "topic": topic,
        "key": cloud_event.partitionkey,
        "payload": encode_event(cloud_event).decode(),
        "created_at": utcnow(),
        "attempts": 0,
    }


def outbox_insert(when: str, events: int = 1) -> str:
    """SQL that inserts ``events`` events, given by :func:`outbox_params`, if ``when`` holds: the part
    of a Postgres statement that writes a ledger change and its events in one round trip. (One row of
    scalar parameters each: cheaper to send and plan than arrays to ``unnest``.)"""
    if events < 1:
        raise ValueError("outbox_insert needs at least one event")
    rows = ", ".join(f"(%(event_id_{i})s::text, %(event_type_{i})s::text, %(topic_{i})s::text, "
                     f"%(event_key_{i})s::text, %(payload_{i})s::text)" for i in range(events))
    return f"""INSERT INTO outbox (event_id, event_type, topic, key, payload, created_at, attempts)
    SELECT e.event_id, e.event_type, e.topic, e.key, e.payload, %(now)s, 0
    FROM (VALUES {rows}) AS e(event_id, event_type, topic, key, payload)
    WHERE {when}
    ON CONFLICT (event_id) DO NOTHING"""


def outbox_insert_each(conditions: Sequence[str]) -> str:
    """As :func:`outbox_insert`, with a condition per event (``conditions[i]`` for the i-th): events
    of a statement that each hold on something else, queued in their order."""
    rows = ", ".join(f"({i}, {when}, %(event_id_{i})s::text, %(event_type_{i})s::text, %(topic_{i})s::text, "
                     f"%(event_key_{i})s::text, %(payload_{i})s::text)" for i, when in enumerate(conditions))
    return f"""INSERT INTO outbox (event_id, event_type, topic, key, payload, created_at, attempts)
    SELECT e.event_id, e.event_type, e.topic, e.key, e.payload, %(now)s, 0
    FROM (VALUES {rows}) AS e(ord, wanted, event_id, event_type, topic, key, payload)
    WHERE e.wanted
    ORDER BY e.ord
    ON CONFLICT (event_id) DO NOTHING"""


def outbox_params(record_event: EventRecorder, events: Sequence[EventData]) -> dict[str, str | None]:
    """The parameters of :func:`outbox_insert` for ``events``."""
    params: dict[str, str | None] = {}
    for i, event in enumerate(events):
        row = record_event.row(event)
        params |= {f"event_id_{i}": row["event_id"], f"event_type_{i}": row["event_type"],
                   f"topic_{i}": row["topic"], f"event_key_{i}": row["key"], f"payload_{i}": row["payload"]}
    return params


@functools.cache
def _insert_for(dialect: str) -> Insert:
    """One prepared statement per dialect: building ``insert().values(...)`` per event cost ~1 ms."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(OutboxEvent).on_conflict_do_nothing(index_elements=["event_id"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(OutboxEvent).on_conflict_do_nothing(index_elements=["event_id"])


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxEvent).where(*PENDING)) or 0


class EventRecorder(Protocol):
    """Writes an event into the outbox inside the caller's transaction (``emit`` bound to a topic)."""

    def __call__(self, session: Session, event: EventData | CloudEvent) -> Any: ...

    def row(self, event: EventData | CloudEvent) -> dict[str, Any]:
        """The outbox row the call would insert (see :func:`outbox_row`)."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxRecorder:
    """``emit`` bound to a topic; the composition root builds it from the configured topic prefix."""

    topic: str

    def __call__(self, session: Session, event: EventData | CloudEvent) -> CloudEvent:
        return emit(session, event, topic=self.topic)

    def row(self, event: EventData | CloudEvent) -> dict[str, Any]:
        if isinstance(event, CloudEvent):
            return outbox_row(event, topic=self.topic)
        event_id, payload = encode_new_event(event)  # no envelope model: the row is all the caller needs
        return {"event_id": event_id, "event_type": event.type, "topic": self.topic, "key": event.partition_key,
                "payload": payload, "created_at": utcnow(), "attempts": 0}


DEFAULT_RECORDER: EventRecorder = OutboxRecorder(TopicLayout().events)
"""For code used outside the composition root (tests, scripts): the default prefix's events topic."""
