"""Publishes outbox rows to a sink in id order, and retries or dead-letters what fails.

Per run (partition key) order is kept: once an event of a run fails with a retryable error, the
run's later events in the batch stay pending too and are sent after it on the next pass. Events
the sink can never accept are replaced by an ``io.wflo.event.dead_lettered`` record on the
dead-letter topic (``<topic>.dlq``) and marked ``dead_lettered_at`` with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from wflo_core.events.envelope import new_event
from wflo_core.events.lease import relay_lease
from wflo_core.events.outbox import PENDING
from wflo_core.events.schemas import EventDeadLettered
from wflo_core.events.sinks.base import Delivery, EventSink, OutboundMessage
from wflo_core.events.topics import dead_letter_topic
from wflo_core.ledger.models import OutboxEvent, utcnow
from wflo_core.ledger.store import Ledger

logger = logging.getLogger("wflo.events.relay")


@dataclass
class RelayStats:
    """What one or more relay passes did."""

    published: int = 0
    failed: int = 0
    """Retryable failures (broker down, timeout); those rows stay pending."""
    deferred: int = 0
    """Rows held back because an earlier event of the same run failed in the same pass."""
    dead_lettered: int = 0
    busy: bool = False
    """Another relay held the lease, so this pass did nothing."""
    errors: list[str] = field(default_factory=list)

    def merge(self, other: RelayStats) -> RelayStats:
        return RelayStats(
            self.published + other.published,
            self.failed + other.failed,
            self.deferred + other.deferred,
            self.dead_lettered + other.dead_lettered,
            self.busy or other.busy,
            (self.errors + other.errors)[-10:],
        )

    @property
    def healthy(self) -> bool:
        return self.failed == 0 and self.deferred == 0


class OutboxRelay:
    """Moves committed events from the outbox to an :class:`EventSink`."""

    def __init__(self, ledger: Ledger, sink: EventSink, *, dead_letter_excerpt_chars: int = 1024) -> None:
        """``dead_letter_excerpt_chars``: how much of an undeliverable payload its DLQ record quotes."""
        self.ledger = ledger
        self.sink = sink
        self.dead_letter_excerpt_chars = dead_letter_excerpt_chars

    def relay_pending(self, limit: int = 500) -> RelayStats:
        """Publish up to ``limit`` of the oldest pending events; never raises for a sink failure."""
        with relay_lease(self.ledger) as acquired:
            if not acquired:
                return RelayStats(busy=True)
            with self.ledger.transaction() as session:
                rows = session.execute(
                    select(
                        OutboxEvent.id,
                        OutboxEvent.event_id,
                        OutboxEvent.event_type,
                        OutboxEvent.topic,
                        OutboxEvent.key,
                        OutboxEvent.payload,
                    )
                    .where(*PENDING)
                    .order_by(OutboxEvent.id)
                    .limit(limit)
                ).all()
            if not rows:
                return RelayStats()
            deliveries = self.sink.deliver(
                [OutboundMessage(r.topic, r.key, r.payload.encode(), r.event_id) for r in rows]
            )
            return self._settle(rows, deliveries)

    def relay_until_idle(self, *, max_seconds: float = 30.0, limit: int = 500) -> RelayStats:
        """Relay batch after batch until nothing is pending, a pass fails, or time is up."""
        deadline = time.monotonic() + max_seconds
        total = RelayStats()
        while True:
            stats = self.relay_pending(limit)
            total = total.merge(stats)
            moved = stats.published + stats.dead_lettered
            if stats.busy or not stats.healthy or moved < limit or time.monotonic() >= deadline:
                return total

    def relay_forever(
        self, stop: threading.Event, *, interval_s: float = 1.0, max_backoff_s: float = 30.0, limit: int = 500
    ) -> None:
        """Daemon loop: relay, sleep; back off exponentially while the sink keeps failing."""
        backoff = interval_s
        while not stop.is_set():
            stats = self.relay_until_idle(limit=limit)
            if stats.healthy:
                backoff = interval_s
                stop.wait(interval_s)
                continue
            logger.warning(
                "outbox relay: %d failed, %d deferred; retrying in %.1fs: %s",
                stats.failed,
                stats.deferred,
                backoff,
                stats.errors[-1:] or "",
            )
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff_s)

    # ------------------------------------------------------------------ bookkeeping

    def _settle(self, rows: list[Any], deliveries: list[Delivery]) -> RelayStats:
        stats = RelayStats()
        published: list[int] = []
        failed: dict[str, list[int]] = defaultdict(list)
        undeliverable: list[tuple[Any, str]] = []
        blocked: set[str] = set()
        for row, delivery in zip(rows, deliveries, strict=True):
            order_key = row.key or row.event_id
            if order_key in blocked:
                stats.deferred += 1
            elif delivery.ok:
                published.append(row.id)
            elif delivery.permanent:
                undeliverable.append((row, delivery.error or "rejected"))
            else:
                blocked.add(order_key)
                failed[delivery.error or "failed"].append(row.id)
        dead = self._dead_letter(undeliverable, failed)
        stats.published, stats.dead_lettered = len(published), len(dead)
        stats.failed = sum(len(ids) for ids in failed.values())
        stats.errors = list(failed)[-10:]
        now = utcnow()
        with self.ledger.transaction() as session:
            for chunk in _chunks(published):
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(chunk))
                    .values(published_at=now, attempts=OutboxEvent.attempts + 1)
                )
            for row_id, reason in dead:
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id == row_id)
                    .values(dead_lettered_at=now, last_error=reason, attempts=OutboxEvent.attempts + 1)
                )
            for reason, ids in failed.items():
                for chunk in _chunks(ids):
                    session.execute(
                        update(OutboxEvent)
                        .where(OutboxEvent.id.in_(chunk))
                        .values(last_error=reason, attempts=OutboxEvent.attempts + 1)
                    )
        return stats

    def _dead_letter(
        self, undeliverable: list[tuple[Any, str]], failed: dict[str, list[int]]
    ) -> list[tuple[int, str]]:
        """Publish a dead-letter record per undeliverable row; returns the rows that now are."""
        if not undeliverable:
            return []
        records = []
        for row, reason in undeliverable:
            logger.error(
                "outbox event %s (%s) can never be delivered, dead-lettering it: %s",
                row.event_id,
                row.event_type,
                reason,
            )
            record = new_event(
                EventDeadLettered(
                    original_id=row.event_id,
                    original_type=row.event_type,
                    original_topic=row.topic,
                    original_key=row.key,
                    reason=reason,
                    payload_bytes=len(row.payload.encode()),
                    payload_excerpt=row.payload[: self.dead_letter_excerpt_chars],
                ),
                source="/wflo/outbox-relay",
            )
            records.append(OutboundMessage.of(record, dead_letter_topic(row.topic)))
        dead = []
        for (row, reason), delivery in zip(undeliverable, self.sink.deliver(records), strict=True):
            if delivery.ok:
                dead.append((row.id, reason))
            else:
                failed[f"dead-letter publish failed: {delivery.error}"].append(row.id)
        return dead


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def relay_best_effort(ledger: Ledger, sink: EventSink, *, max_seconds: float = 10.0) -> RelayStats:
    """Publish what is pending now without ever raising: whatever is left waits in the outbox for the
    daemon-side relay (sensor or ``wflo events relay``), so a broker outage never fails a step."""
    try:
        stats = OutboxRelay(ledger, sink).relay_until_idle(max_seconds=max_seconds)
    except Exception as err:  # noqa: BLE001 - publishing later is the contract
        logger.warning("event relay failed, events stay in the outbox: %s", err)
        return RelayStats(errors=[str(err)])
    if stats.failed or stats.deferred:
        logger.warning("event relay: %d events wait in the outbox (%s)", stats.failed + stats.deferred,
                       "; ".join(stats.errors[-1:]))
    return stats
