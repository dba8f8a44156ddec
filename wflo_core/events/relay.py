"""Publishes outbox rows to a sink in id order, and retries or dead-letters what fails.

Per run (partition key) order is kept: once an event of a run fails with a retryable error, the
run's later events in the batch stay pending too and are sent after it on the next pass. Events
the sink can never accept are replaced by an ``io.wflo.event.dead_lettered`` record on the
dead-letter topic (``<topic>.dlq``) and marked ``dead_lettered_at`` with the reason.

Per batch: one keyset-paged read, one produce per event and one flush, one UPDATE. On Postgres the
reads and UPDATEs run on a thread of their own, overlapping the sink's work.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Executable, bindparam, select, text, update

from wflo_core.events.breaker import PublishBreaker
from wflo_core.events.envelope import new_event
from wflo_core.events.lease import relay_lease
from wflo_core.events.outbox import PENDING
from wflo_core.events.schemas import EventDeadLettered
from wflo_core.events.sinks.base import Delivery, EventSink, OutboundMessage
from wflo_core.events.topics import dead_letter_topic
from wflo_core.ledger.models import OutboxEvent, utcnow
from wflo_core.ledger.store import Ledger

logger = logging.getLogger("wflo.events.relay")
_T = TypeVar("_T")


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
    skipped: bool = False
    """An in-step relay that did not try: the publish breaker was open (the broker was down)."""

    def merge(self, other: RelayStats) -> RelayStats:
        return RelayStats(
            self.published + other.published,
            self.failed + other.failed,
            self.deferred + other.deferred,
            self.dead_lettered + other.dead_lettered,
            self.busy or other.busy,
            (self.errors + other.errors)[-10:],
            self.skipped or other.skipped,
        )

    @property
    def healthy(self) -> bool:
        return self.failed == 0 and self.deferred == 0


DEFAULT_BATCH = 2000
"""Rows per relay batch: one keyset-paged read, one produce per event, one flush, one UPDATE."""
SEQUENCE_DIGITS = 20
"""Width of the ``sequence`` extension: a BIGINT row id, zero-padded so strings sort like numbers."""


def sequenced(payload: str, row_id: int) -> bytes:
    """The stored CloudEvent with the CloudEvents ``sequence`` extension set to its outbox row id.

    Row ids are assigned at insert, so an event inserted after another committed gets a larger id:
    consumers order a run's events from concurrent writers by ``sequence`` (``time`` comes from
    each writer's clock and does not order them). Spliced into the JSON, never re-encoded.
    """
    return f'{{"sequence":"{row_id:0{SEQUENCE_DIGITS}d}",{payload[1:]}'.encode()


_PENDING_AFTER = (
    select(
        OutboxEvent.id, OutboxEvent.event_id, OutboxEvent.event_type, OutboxEvent.topic, OutboxEvent.key,
        OutboxEvent.payload,
    )
    .where(*PENDING, OutboxEvent.id > bindparam("after"))
    .order_by(OutboxEvent.id)
    .limit(bindparam("limit"))
)
_PENDING_AFTER_PG = (
    "SELECT id, event_id, event_type, topic, key, payload FROM outbox"
    " WHERE published_at IS NULL AND dead_lettered_at IS NULL AND id > %s ORDER BY id LIMIT %s"
)
"""The same read through the driver's cursor: plain tuples cost half of what result rows do."""


class _Row(NamedTuple):
    """A pending outbox row; the hot path reads plain tuples in this column order."""

    id: int
    event_id: str
    event_type: str
    topic: str
    key: str | None
    payload: str


@functools.cache
def _mark_published(dialect: str) -> Executable:
    """Postgres gets the ids as one array parameter (``= ANY``): 2,000 separate placeholders cost
    more to parse and plan than the update itself. SQLite takes an expanding ``IN``."""
    if dialect == "postgresql":
        return text(
            "UPDATE outbox SET published_at = :now, attempts = attempts + 1 WHERE id = ANY(:ids)"
        ).bindparams(bindparam("now", type_=OutboxEvent.__table__.c.published_at.type))
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(bindparam("ids", expanding=True)))
        .values(published_at=bindparam("now"), attempts=OutboxEvent.attempts + 1)
    )


class _Marks(NamedTuple):
    """The row updates one batch's outcome needs."""

    published: list[int]
    dead: list[tuple[int, str]]
    failed: dict[str, list[int]]


class _DatabaseWorker:
    """Runs the relay's reads and UPDATEs on one thread of their own, in submission order, so on
    Postgres they overlap the sink's work (the driver releases the GIL while it waits). SQLite runs
    them on the spot: an in-memory ledger exists in one thread only, and a file has one writer.

    Leaving waits for every task and raises the first failure; a failed UPDATE also stops the
    next ``submit``. A batch sent but left unmarked is sent again by the next pass (at-least-once).
    """

    def __init__(self, ledger: Ledger) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="wflo-relay-db")
            if ledger.dialect == "postgresql" else None
        )
        self._running: list[Future[Any]] = []

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        self._raise_failure()
        if self._pool is not None:
            future = self._pool.submit(fn, *args)
        else:
            future = Future()
            try:
                future.set_result(fn(*args))
            except Exception as err:  # noqa: BLE001 - surfaced by result() or the next submit
                future.set_exception(err)
        self._running.append(future)
        return future

    def _raise_failure(self) -> None:
        for future in self._running:
            if future.done() and (err := future.exception()) is not None:
                raise err
        self._running = [f for f in self._running if not f.done()]

    def __enter__(self) -> _DatabaseWorker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if exc_type is None:
            for future in self._running:
                future.result()


class OutboxRelay:
    """Moves committed events from the outbox to an :class:`EventSink`."""

    def __init__(self, ledger: Ledger, sink: EventSink, *, dead_letter_excerpt_chars: int = 1024) -> None:
        """``dead_letter_excerpt_chars``: how much of an undeliverable payload its DLQ record quotes."""
        self.ledger = ledger
        self.sink = sink
        self.dead_letter_excerpt_chars = dead_letter_excerpt_chars

    def relay_pending(self, limit: int = DEFAULT_BATCH) -> RelayStats:
        """Publish up to ``limit`` of the oldest pending events; never raises for a sink failure."""
        with relay_lease(self.ledger) as acquired:
            if not acquired:
                return RelayStats(busy=True)
            return self._relay(limit, batches=1, deadline=None)

    def relay_until_idle(self, *, max_seconds: float = 30.0, limit: int = DEFAULT_BATCH) -> RelayStats:
        """Relay batch after batch (one lease, keyset-paged) until nothing is pending, a batch fails,
        or time is up."""
        with relay_lease(self.ledger) as acquired:
            if not acquired:
                return RelayStats(busy=True)
            return self._relay(limit, batches=None, deadline=time.monotonic() + max_seconds)

    def _relay(self, limit: int, *, batches: int | None, deadline: float | None) -> RelayStats:
        """Batches in a pipeline: while the sink delivers batch N, the database thread marks batch
        N-1 published and reads batch N+1 (keyset-paged, so the read needs no earlier UPDATE).

        A row is marked published only after the sink acknowledged it; a batch that is not healthy
        ends the pass before the next (already read) batch is sent, so a failed run's later events
        wait behind it. Every UPDATE has finished, or raised, before the lease is released.
        """
        total = RelayStats()
        with _DatabaseWorker(self.ledger) as worker:
            rows, messages = worker.submit(self._read, 0, limit).result()
            done = 0
            while rows:
                done += 1
                more = len(rows) == limit and (batches is None or done < batches) and (
                    deadline is None or time.monotonic() < deadline
                )
                ahead = worker.submit(self._read, rows[-1][0], limit) if more else None
                stats, marks = self._outcome(rows, self.sink.deliver(messages))
                worker.submit(self._mark, marks)
                total = total.merge(stats)
                if ahead is None or not stats.healthy:
                    break
                rows, messages = ahead.result()
        return total

    def _read(self, after: int, limit: int) -> tuple[Sequence[Sequence[Any]], list[OutboundMessage]]:
        """The pending rows with id > ``after``, oldest first (the partial index ``ix_outbox_pending``),
        and their messages, built here: on Postgres this runs while the sink waits for the broker."""
        with self.ledger.engine.connect() as conn:
            if self.ledger.dialect == "postgresql":
                driver = conn.connection
                cursor = driver.cursor()
                cursor.execute(_PENDING_AFTER_PG, (after, limit))
                rows: Sequence[Sequence[Any]] = cursor.fetchall()
                cursor.close()
                driver.rollback()
            else:
                rows = conn.execute(_PENDING_AFTER, {"after": after, "limit": limit}).all()
                conn.rollback()
        return rows, [OutboundMessage(r[3], r[4], sequenced(r[5], r[0]), r[1]) for r in rows]

    def relay_forever(
        self, stop: threading.Event, *, interval_s: float = 1.0, max_backoff_s: float = 30.0,
        limit: int = DEFAULT_BATCH,
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

    def _outcome(
        self, rows: Sequence[Sequence[Any]], deliveries: list[Delivery]
    ) -> tuple[RelayStats, _Marks]:
        """What the sink did with a batch, and the row updates that record it (dead letters sent)."""
        stats = RelayStats()
        published: list[int] = []
        failed: dict[str, list[int]] = defaultdict(list)
        undeliverable: list[tuple[_Row, str]] = []
        blocked: set[str] = set()
        for row, delivery in zip(rows, deliveries, strict=True):
            if delivery.error is None and not blocked:  # the common case: one test per row
                published.append(row[0])
                continue
            order_key = row[4] or row[1]
            if order_key in blocked:
                stats.deferred += 1
            elif delivery.ok:
                published.append(row[0])
            elif delivery.permanent:
                undeliverable.append((_Row._make(row), delivery.error or "rejected"))
            else:
                blocked.add(order_key)
                failed[delivery.error or "failed"].append(row[0])
        dead = self._dead_letter(undeliverable, failed)
        stats.published, stats.dead_lettered = len(published), len(dead)
        stats.failed = sum(len(ids) for ids in failed.values())
        stats.errors = list(failed)[-10:]
        return stats, _Marks(published, dead, dict(failed))

    def _mark(self, marks: _Marks) -> None:
        """One transaction per batch; the published rows in one statement."""
        now = utcnow()
        with self.ledger.transaction() as session:
            if marks.published:
                session.execute(_mark_published(self.ledger.dialect), {"ids": marks.published, "now": now})
            for row_id, reason in marks.dead:
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id == row_id)
                    .values(dead_lettered_at=now, last_error=reason, attempts=OutboxEvent.attempts + 1)
                )
            for reason, ids in marks.failed.items():
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(ids))
                    .values(last_error=reason, attempts=OutboxEvent.attempts + 1)
                )

    def _dead_letter(
        self, undeliverable: list[tuple[_Row, str]], failed: dict[str, list[int]]
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


IN_STEP_DELIVERY_TIMEOUT_S = 1.0
"""How long an in-step publish waits for acknowledgements before leaving the events to the relay."""
IN_STEP_MAX_SECONDS = 2.0


def relay_in_step(
    ledger: Ledger, sink: EventSink, breaker: PublishBreaker, *, max_seconds: float = IN_STEP_MAX_SECONDS
) -> RelayStats:
    """A step's courtesy publish on its way out: skipped while ``breaker`` is open, and a failure
    opens it, so no later step (in any process on this host) waits on a broker that is down."""
    if breaker.is_open:
        return RelayStats(skipped=True)
    stats = relay_best_effort(ledger, sink, max_seconds=max_seconds)
    if stats.failed or (stats.errors and not stats.published):
        breaker.open()
    return stats


def relay_catch_up(
    ledger: Ledger, sink: EventSink, breaker: PublishBreaker | None = None, *, max_seconds: float = 30.0,
    limit: int = DEFAULT_BATCH,
) -> RelayStats:
    """The daemon-side relay (sensor, ``wflo events relay``): always tries, and tells the in-step
    relays through ``breaker`` whether the broker is back."""
    try:
        stats = OutboxRelay(ledger, sink).relay_until_idle(max_seconds=max_seconds, limit=limit)
    except Exception as err:  # noqa: BLE001 - the next pass retries
        logger.warning("event relay failed, events stay in the outbox: %s", err)
        stats = RelayStats(errors=[str(err)])
    if breaker is not None and not stats.busy:
        if stats.failed or stats.errors:
            breaker.open()
        else:
            breaker.close()
    return stats
