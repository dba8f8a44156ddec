"""Publishes outbox rows to a sink in id order, and retries or dead-letters what fails.

Per run (partition key) order is kept: once an event of a run fails with a retryable error, the
run's later events in the batch stay pending too and are sent after it on the next pass. Events
the sink can never accept are replaced by an ``io.wflo.event.dead_lettered`` record on the
dead-letter topic (``<topic>.dlq``) and marked ``dead_lettered_at`` with the reason.

What is relayed is kept by a cursor (``outbox_cursor.relayed_through``), not by rewriting each row:
one small UPDATE per batch. The cursor may only pass ids no row can still commit under, and on
Postgres ids are handed out at INSERT, not at COMMIT: a writer can hold id 10 while id 11 commits.
So a pass moves the cursor up to a *horizon*: the last id handed out (the id sequence's
``last_value``), once every transaction that held the outbox open for writing when it was read
has ended. Any transaction holding an id takes its ``RowExclusiveLock`` on ``outbox`` before the
INSERT draws the id and keeps it until it ends, so ``pg_locks`` names every writer that may still
commit an id up to that number (this needs ids drawn by the column default from a sequence without
a cache, as the migrations make it). Rows past the horizon (a writer was still open, for longer than
``HORIZON_WAIT_S``) are published and marked ``published_at`` one by one, as are the rows after a
failure in a batch. On SQLite writers take the database's write lock before drawing an id and keep
it until they commit, so ids commit in order and the horizon is the highest id a read sees.

Per batch: one read of a window of ids, one produce per event and one flush, one UPDATE of the cursor. On
Postgres the reads and UPDATEs run on a thread of their own, overlapping the sink's work.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, Executable, bindparam, func, select, text, update

from wflo_core.events.breaker import PublishBreaker
from wflo_core.events.envelope import new_event
from wflo_core.events.lease import relay_lease
from wflo_core.events.schemas import EventDeadLettered
from wflo_core.events.sinks.base import Delivery, EventSink, OutboundMessage
from wflo_core.events.topics import dead_letter_topic
from wflo_core.ledger.models import OutboxCursor, OutboxEvent, utcnow
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
"""Rows per relay batch: one read (a window of ids), one produce per event, one flush, one UPDATE."""
SEQUENCE_DIGITS = 20
"""Width of the ``sequence`` extension: a BIGINT row id, zero-padded so strings sort like numbers."""
_SEQUENCE_PREFIX = f'{{"sequence":"%0{SEQUENCE_DIGITS}d",'
HORIZON_WAIT_S = 0.1
"""How long a pass waits for writers still open (that may hold an earlier id) before it publishes the
rows committed after theirs and marks those one by one."""


def sequenced(payload: str, row_id: int) -> bytes:
    """The stored CloudEvent with the CloudEvents ``sequence`` extension set to its outbox row id.

    Row ids are assigned at insert, so an event inserted after another committed gets a larger id:
    consumers order a run's events from concurrent writers by ``sequence`` (``time`` comes from
    each writer's clock and does not order them). Spliced into the JSON, never re-encoded.
    """
    return (_SEQUENCE_PREFIX % row_id + payload[1:]).encode()  # %-format: a third of an f-string's cost


_UNMARKED = (OutboxEvent.published_at.is_(None), OutboxEvent.dead_lettered_at.is_(None))
_READ = (
    select(
        OutboxEvent.id, OutboxEvent.event_id, OutboxEvent.event_type, OutboxEvent.topic, OutboxEvent.key,
        OutboxEvent.payload,
    )
    .where(OutboxEvent.id > bindparam("after"), *_UNMARKED)
    .order_by(OutboxEvent.id)
    .limit(bindparam("limit"))
)
_CURSOR = select(func.coalesce(func.max(OutboxCursor.relayed_through), 0))
_HIGHEST = select(func.coalesce(func.max(OutboxEvent.id), 0))
_READ_PG = (
    "SELECT id, event_id, event_type, topic, key, convert_to('{\"sequence\":\"' || lpad(id::text, "
    f"{SEQUENCE_DIGITS}, '0') || '\",', 'UTF8') || substring(convert_to(payload, 'UTF8') from 2) FROM outbox"
    " WHERE id > %s AND id <= %s AND published_at IS NULL AND dead_lettered_at IS NULL ORDER BY id"
)
"""The same read through the driver's (binary) cursor, of one window of ids (at most a batch of them,
up to the horizon), with the message value spliced by the server (:func:`sequenced`) and sent as
bytes: the splice, decoding and encoding were most of the relay's own CPU per event, and plain tuples
cost half of what result rows do. A window, not ``ORDER BY id LIMIT``: with the outbox's statistics
behind a burst of inserts (the usual case for a relay), the planner read and sorted every pending row
up to the horizon (on disk) for each batch of 2,000, a fifth of the window's speed."""
_NEXT_PG = (
    "SELECT min(id) FROM outbox WHERE id > %s AND id <= %s AND published_at IS NULL AND dead_lettered_at IS NULL"
)
"""The next pending id after an empty window (a gap in the ids, or rows marked ahead of the cursor)."""
_CURSOR_PG = "SELECT COALESCE(MAX(relayed_through), 0) FROM outbox_cursor"
_HORIZON_PG = (
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_id_seq;"
    " SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation' AND relation = 'outbox'::regclass"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')"
)
"""The last id handed out, then the transactions holding the outbox open for writing: two statements
in this order, so a writer that drew an id up to that number is either listed or already over."""
_WATCHED = 4
"""Horizons a pass waits on at once; a newer one replaces the last when the list is full."""
_new_tuple = tuple.__new__


class _Row(NamedTuple):
    """A pending outbox row as read; the hot path reads plain tuples in this column order."""

    id: int
    event_id: str
    event_type: str
    topic: str
    key: str | None
    value: bytes
    """The message: the stored CloudEvent with its ``sequence`` (:func:`sequenced`)."""

    @property
    def payload(self) -> str:
        """The CloudEvent as stored in the outbox, without the ``sequence`` the relay spliced in."""
        return "{" + self.value[len(_SEQUENCE_PREFIX % self.id):].decode()


class _Batch(NamedTuple):
    """Rows read for one delivery, and how far they settle the outbox."""

    rows: Sequence[Sequence[Any]]
    messages: list[OutboundMessage]
    through: int | None
    """Every row that can ever exist with an id after the previous batch's and up to this one is in
    this batch, so the cursor may move here once they are all sent. None: rows past the horizon."""
    more: bool


_ADVANCE_PG = (
    "INSERT INTO outbox_cursor (id, relayed_through, updated_at) VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE"
    " SET relayed_through = GREATEST(outbox_cursor.relayed_through, EXCLUDED.relayed_through),"
    " updated_at = EXCLUDED.updated_at"
)
"""Moves the cursor forward only; an upsert, as a ledger built from the models has no row yet."""


@functools.cache
def _advance_cursor_sqlite() -> Executable:
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = sqlite_insert(OutboxCursor).values(id=1, relayed_through=bindparam("through"), updated_at=bindparam("now"))
    return insert.on_conflict_do_update(index_elements=["id"], set_={
        "relayed_through": func.max(OutboxCursor.relayed_through, insert.excluded.relayed_through),
        "updated_at": insert.excluded.updated_at})


@functools.cache
def _mark_published(dialect: str) -> Executable:
    """Postgres gets the ids as one array parameter (``= ANY``): 2,000 separate placeholders cost
    more to parse and plan than the update itself. SQLite takes an expanding ``IN``."""
    if dialect == "postgresql":
        return text("UPDATE outbox SET published_at = :now WHERE id = ANY(:ids)").bindparams(
            bindparam("now", type_=OutboxEvent.__table__.c.published_at.type))
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(bindparam("ids", expanding=True)))
        .values(published_at=bindparam("now"))
    )


class _Marks(NamedTuple):
    """The writes one batch's outcome needs."""

    through: int | None
    """The cursor's new position, if it moves."""
    published: list[int]
    """Rows published past the cursor's new position, marked one by one."""
    dead: list[tuple[int, str]]
    failed: dict[str, list[int]]


class _Frontier:
    """Where a pass reads next, and the horizon it may move the cursor to; the database thread's alone.

    ``settled`` is the horizon: no row with an id up to it can still commit. ``target`` is the last id
    handed out when the pass began: the pass is done once the horizon reaches it and the rows up to it
    are read. ``_open`` pairs the last id handed out at some read with the writers open then; once
    all of them have ended, that id is a horizon.
    """

    def __init__(self, deadline: float | None, driver: Any = None) -> None:
        self.driver = driver
        """Postgres: the pass's own driver connection, in autocommit (a statement is a transaction, so
        each read has a snapshot of its own, and no BEGIN or ROLLBACK round trips)."""
        self.after: int | None = None
        """The id the next read starts after; None until the first read loads the cursor."""
        self.settled = 0
        self.target: int | None = None
        self.tailing = False
        """Past the horizon: reading rows up to ``target`` that are committed, each marked on its own."""
        self.deadline = deadline
        self._open: list[tuple[int, frozenset[str]]] = []

    def observe(self, handed_out: int, writers: frozenset[str]) -> None:
        """Move the horizon with a reading of the id sequence and the writers open right after it."""
        if self.target is None:
            self.target = handed_out
        ended = [seen for seen, open_then in self._open if not open_then & writers]
        if not writers:
            ended.append(handed_out)
        elif len(self._open) < _WATCHED:
            self._open.append((handed_out, writers))
        else:
            self._open[-1] = (handed_out, writers)
        self.settled = max([self.settled, *ended])
        self._open = [(seen, open_then) for seen, open_then in self._open if seen > self.settled]

    def short_of_target(self) -> bool:
        """The horizon has not reached the pass's target: writers that may hold an id up to it are
        still open (never true past the horizon, or on SQLite, which has no target)."""
        return not self.tailing and self.target is not None and self.settled < self.target


    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _first(row: Sequence[Any] | None) -> int:
    """The single value of a one-row, one-column result that is never NULL."""
    assert row is not None
    return int(row[0])


def _first_or_none(row: Sequence[Any] | None) -> int | None:
    """The single value of a one-row, one-column result, which may be NULL."""
    return None if row is None or row[0] is None else int(row[0])


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
        """Relay batch after batch (one lease, windows of ids) until nothing is pending, a batch fails,
        or time is up."""
        with relay_lease(self.ledger) as acquired:
            if not acquired:
                return RelayStats(busy=True)
            return self._relay(limit, batches=None, deadline=time.monotonic() + max_seconds)

    def _relay(self, limit: int, *, batches: int | None, deadline: float | None) -> RelayStats:
        """Batches in a pipeline: while the sink delivers batch N, the database thread moves the cursor
        past batch N-1 and reads batch N+1 (the next window of ids, so the read needs no earlier UPDATE).

        A row counts as relayed only after the sink acknowledged it; a batch that is not healthy ends
        the pass before the next (already read) batch is sent, so a failed run's later events wait
        behind it. Every UPDATE has finished, or raised, before the lease is released.
        """
        total = RelayStats()
        with self._pass_connection() as driver, _DatabaseWorker(self.ledger) as worker:
            frontier = _Frontier(deadline, driver)
            batch = worker.submit(self._read, frontier, limit).result()
            done = 0
            while batch.rows:
                done += 1
                more = batch.more and (batches is None or done < batches) and (
                    deadline is None or time.monotonic() < deadline
                )
                ahead = worker.submit(self._read, frontier, limit) if more else None
                stats, marks = self._outcome(batch, self.sink.deliver(batch.messages))
                worker.submit(self._mark, marks, frontier)
                total = total.merge(stats)
                if ahead is None or not stats.healthy:
                    break
                batch = ahead.result()
        return total

    @contextmanager
    def _pass_connection(self) -> Iterator[Any]:
        """Postgres: one connection for a pass's reads and UPDATEs, in autocommit. SQLite: None."""
        if self.ledger.dialect != "postgresql":
            yield None
            return
        with self.ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn.connection.driver_connection

    def _read(self, frontier: _Frontier, limit: int) -> _Batch:
        """The next pending rows, oldest first, and their messages (built here: on Postgres this runs
        while the sink waits for the broker); moves ``frontier`` past them."""
        if frontier.driver is not None:
            rows, through, more = self._read_pg(frontier, limit)
        else:
            with self.ledger.engine.connect() as conn:
                rows, through = self._read_sqlite(frontier, conn, limit)
            frontier.after = through = rows[-1][0] if len(rows) == limit else through
            more = len(rows) == limit
        messages = [_new_tuple(OutboundMessage, (r[3], r[4], r[5], r[1], ())) for r in rows]
        return _Batch(rows, messages, through, more)

    def _read_pg(self, frontier: _Frontier, limit: int) -> tuple[Sequence[Sequence[Any]], int | None, bool]:
        """The pending rows of the next window of ids up to the horizon, read by a statement (a snapshot)
        that began after the horizon was measured; how far they settle the outbox; whether to read on.
        Caught up with a horizon short of the pass's target, waits for the writers still open, then reads
        past them (rows the cursor cannot cover, up to the target)."""
        cursor = frontier.driver.cursor()
        pause, waited = 0.001, 0.0
        try:
            while True:
                if frontier.after is None:
                    cursor.execute(_CURSOR_PG)
                    frontier.after = frontier.settled = _first(cursor.fetchone())
                if not frontier.tailing and frontier.settled - frontier.after < limit:  # may reach the horizon
                    cursor.execute(_HORIZON_PG)
                    handed_out = _first(cursor.fetchone())
                    cursor.nextset()
                    frontier.observe(handed_out, frozenset(vxid for (vxid,) in cursor.fetchall()))
                end = frontier.target if frontier.tailing else frontier.settled
                assert end is not None  # a tail has a target
                if frontier.after < end:
                    upper = min(frontier.after + limit, end)
                    cursor.execute(_READ_PG, (frontier.after, upper), binary=True)
                    rows: Sequence[Sequence[Any]] = cursor.fetchall()
                    if rows:
                        frontier.after = upper
                        return rows, None if frontier.tailing else upper, upper < end or frontier.short_of_target()
                    cursor.execute(_NEXT_PG, (upper, end))
                    following = _first_or_none(cursor.fetchone())
                    frontier.after = end if following is None else following - 1
                    continue
                if frontier.tailing or not frontier.short_of_target():
                    return [], None, False
                if waited >= HORIZON_WAIT_S or frontier.past_deadline():
                    frontier.tailing = True  # nothing up to the horizon: read past it
                    continue
                time.sleep(pause)  # wait for the horizon to move
                waited += pause
                pause *= 2
        finally:
            cursor.close()

    def _read_sqlite(self, frontier: _Frontier, conn: Connection, limit: int) -> tuple[Sequence[Sequence[Any]], int]:
        """One transaction: ids are drawn under the write lock, so none at or below the highest id this
        read sees can still commit."""
        if frontier.after is None:
            frontier.after = conn.execute(_CURSOR).scalar_one()
        highest = conn.execute(_HIGHEST).scalar_one()
        rows = [(*r[:5], sequenced(r[5], r[0])) for r in conn.execute(_READ, {"after": frontier.after, "limit": limit})]
        conn.rollback()
        return rows, max(highest, frontier.after)

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

    def _outcome(self, batch: _Batch, deliveries: Sequence[Delivery]) -> tuple[RelayStats, _Marks]:
        """What the sink did with a batch, and the writes that record it (dead letters sent)."""
        stats = RelayStats()
        published: list[int] = []
        failed: dict[str, list[int]] = defaultdict(list)
        undeliverable: list[tuple[_Row, str]] = []
        blocked: set[str] = set()
        still_open: list[int] = []
        for row, delivery in zip(batch.rows, deliveries, strict=True):
            if delivery.error is None and not blocked:  # the common case: one test per row
                published.append(row[0])
                continue
            order_key = row[4] or row[1]
            if order_key in blocked:
                stats.deferred += 1
                still_open.append(row[0])
            elif delivery.ok:
                published.append(row[0])
            elif delivery.permanent:
                undeliverable.append((_Row._make(row), delivery.error or "rejected"))
            else:
                blocked.add(order_key)
                failed[delivery.error or "failed"].append(row[0])
                still_open.append(row[0])
        dead = self._dead_letter(undeliverable, failed)
        sent = {row_id for row_id, _ in dead}
        still_open += [row.id for row, _ in undeliverable if row.id not in sent]
        stats.published, stats.dead_lettered = len(published), len(dead)
        stats.failed = sum(len(ids) for ids in failed.values())
        stats.errors = list(failed)[-10:]
        through = batch.through
        if through is not None:  # the cursor moves up to the first row still open; the rest one by one
            if still_open:
                through = min(still_open) - 1
            published = [row_id for row_id in published if row_id > through]
        return stats, _Marks(through, published, dead, dict(failed))

    def _mark(self, marks: _Marks, frontier: _Frontier) -> None:
        """One transaction per batch: the cursor, and the rows it does not cover. On Postgres a batch
        that only moves the cursor is one statement on the pass's connection."""
        now = utcnow()
        only_cursor = not (marks.published or marks.dead or marks.failed)
        if frontier.driver is not None and only_cursor:
            if marks.through is not None:
                with frontier.driver.cursor() as cursor:
                    cursor.execute(_ADVANCE_PG, (marks.through, now))
            return
        with self.ledger.transaction() as session:
            if marks.through is not None and frontier.driver is not None:
                session.connection().exec_driver_sql(_ADVANCE_PG, (marks.through, now))
            elif marks.through is not None:
                session.execute(_advance_cursor_sqlite(), {"through": marks.through, "now": now})
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
CATCH_UP_DELIVERY_TIMEOUT_S = 10.0
"""How long the daemon-side relay (the relay sensor) waits for acknowledgements. Nothing waits on it,
and it builds a fresh producer per pass: an idempotent one waits about 0.5 s for its producer id
before it sends anything, so a step's 1 s left a loaded machine timing the same events out pass
after pass (a run's last event, which no step is left to publish, missed its deadline)."""


def relay_in_step(
    ledger: Ledger, sink: EventSink, breaker: PublishBreaker, *, max_seconds: float = IN_STEP_MAX_SECONDS
) -> RelayStats:
    """A step's courtesy publish on its way out: skipped while ``breaker`` is open, and a failure
    opens it, so no later step (in any process on this host) waits on a broker that is down. A
    failure also closes ``sink``: a Kafka producer left open would go on reconnecting to that broker,
    logging each refusal, for the rest of the process (the sink connects again if used again)."""
    if breaker.is_open:
        return RelayStats(skipped=True)
    stats = relay_best_effort(ledger, sink, max_seconds=max_seconds)
    if stats.failed or (stats.errors and not stats.published):
        breaker.open()
        sink.close()
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
