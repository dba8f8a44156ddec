"""The transactional outbox: an event is committed in the same transaction as the ledger change.

``emit(session, event)`` inserts the encoded CloudEvent into the ``outbox`` table using the
caller's session, so the event exists exactly when the change does: a rollback drops both, and a
broker outage cannot lose it. :class:`~wflo_core.events.relay.OutboxRelay` publishes it later.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from sqlalchemy import Insert, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from wflo_core.events.envelope import DEFAULT_SOURCE, CloudEvent, encode_event, new_event
from wflo_core.events.schemas import EventData
from wflo_core.events.topics import TopicLayout
from wflo_core.ledger.models import OutboxEvent, utcnow

PENDING = (OutboxEvent.published_at.is_(None), OutboxEvent.dead_lettered_at.is_(None))
"""Rows still to relay: neither published nor dead-lettered."""


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
    row = (cloud_event.id, cloud_event.type, topic, cloud_event.partitionkey,
           encode_event(cloud_event).decode(), utcnow())
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
        connection.execute(_INSERT_SQLITE, dict(zip(_COLUMNS, row, strict=True)))
    return cloud_event


_COLUMNS = ("event_id", "event_type", "topic", "key", "payload", "created_at")
_INSERT_PG = (
    f"INSERT INTO outbox ({', '.join(_COLUMNS)}, attempts) VALUES (%s, %s, %s, %s, %s, %s, 0)"
    " ON CONFLICT (event_id) DO NOTHING"
)
_INSERT_SQLITE: Insert = (
    sqlite_insert(OutboxEvent).values(attempts=0).on_conflict_do_nothing(index_elements=["event_id"])
)


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxEvent).where(*PENDING)) or 0


class EventRecorder(Protocol):
    """Writes an event into the outbox inside the caller's transaction (``emit`` bound to a topic)."""

    def __call__(self, session: Session, event: EventData | CloudEvent) -> Any: ...


def outbox_recorder(topic: str) -> EventRecorder:
    """``emit`` bound to ``topic``; the composition root builds it from the configured topic prefix."""
    return functools.partial(emit, topic=topic)


DEFAULT_RECORDER: EventRecorder = outbox_recorder(TopicLayout().events)
"""For code used outside the composition root (tests, scripts): the default prefix's events topic."""
