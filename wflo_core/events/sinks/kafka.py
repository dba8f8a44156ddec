"""The production sink: confluent-kafka with an idempotent, ``acks=all`` producer.

``deliver`` produces a batch keyed by run id (a run's events share a partition, so they stay in
order), each message a structured-mode CloudEvent by the Kafka protocol binding (header
``content-type: application/cloudevents+json; charset=UTF-8``), then waits for every delivery
report: a message counts as delivered only when the broker acknowledged it. Errors the broker will
repeat forever (message too large, invalid record, policy) are ``permanent``; everything else
(broker down, timeouts) is retryable.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from wflo_core.events.sinks.base import AllDelivered, Delivery, OutboundMessage

logger = logging.getLogger("wflo.events.kafka")
REPEAT_LOG_S = 60.0
"""How often the same librdkafka line (its attempt's timing aside) is logged again."""
_TIMING = re.compile(r" \(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)")

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]

PERMANENT_ERROR_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.POLICY_VIOLATION,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)
_FLUSH_GRACE_S = 5.0
_NUDGE_S = 0.001
"""``connect`` asks for metadata and waits this long: the request goes out, the answer is not awaited."""
_PROBE_S = 0.1
"""How long ``deliver`` asks for metadata once the producer reported every broker down (loopback: a
refused connection fails in a few ms, a broker that is back answers in a few ms)."""

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
STRUCTURED_HEADERS: tuple[tuple[str, bytes], ...] = (("content-type", CONTENT_TYPE.encode()),)
"""The Kafka protocol binding's structured mode: without ``content-type``, a consumer following the
spec (Knative, the CloudEvents SDKs) would read the message as binary mode."""
_HEADERS: list[tuple[str, str | bytes | None]] = list(STRUCTURED_HEADERS)
"""confluent-kafka takes a list: one shared list, never mutated."""


class DistinctLogLines:
    """librdkafka's logger for one producer: each distinct line once per ``REPEAT_LOG_S``.

    A producer whose broker is down logs every reconnect, "Connection refused" twenty times in a
    short run, each line saying what the first did; wflo's own warning reports the events left waiting.
    """

    def __init__(self, target: logging.Logger = logger) -> None:
        self.target = target
        self._logged: dict[str, float] = {}

    def log(self, level: int, msg: str, *args: object) -> None:
        """What confluent-kafka calls: ``log(level, "%s [%s] %s", facility, client, text)``."""
        line = msg % args if args else msg
        now, seen = time.monotonic(), _TIMING.sub("", line)
        if now - self._logged.get(seen, -math.inf) >= REPEAT_LOG_S:
            if len(self._logged) > 256:  # distinct lines are few; a flood of them must not grow this
                self._logged.clear()
            self._logged[seen] = now
            self.target.log(level, "%s", line)


def producer_config(
    bootstrap_servers: str,
    *,
    delivery_timeout_s: float = 30.0,
    compression: Compression = "zstd",
    linger_ms: int = 5,
    max_message_bytes: int = 1_000_000,
    client_id: str = "wflo",
) -> dict[str, Any]:
    """librdkafka settings of the event producer (the benchmark's raw baseline uses the same)."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,  # implies acks=all, retries, max.in.flight <= 5: no dupes, no reorder
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "message.max.bytes": max_message_bytes,
    }


class KafkaEventSink:
    """Delivers events to Kafka and reports, per message, whether the broker acknowledged it."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        delivery_timeout_s: float = 30.0,
        compression: Compression = "zstd",
        linger_ms: int = 5,
        max_message_bytes: int = 1_000_000,
        client_id: str = "wflo",
        extra_config: Mapping[str, str | int | float | bool] | None = None,
        connect: bool = False,
    ) -> None:
        """``delivery_timeout_s`` bounds how long ``deliver`` waits while the broker is unreachable;
        ``connect`` starts connecting at once (see :meth:`connect`).

        ``extra_config`` is the escape hatch for other librdkafka settings (security, SASL);
        it cannot turn off idempotence or ``acks=all``.
        """
        self.bootstrap_servers = bootstrap_servers
        self.delivery_timeout_s = delivery_timeout_s
        self._config = producer_config(
            bootstrap_servers,
            delivery_timeout_s=delivery_timeout_s,
            compression=compression,
            linger_ms=linger_ms,
            max_message_bytes=max_message_bytes,
            client_id=client_id,
        )
        overridden = {"enable.idempotence", "acks"} & set(extra_config or {})
        if overridden:
            from wflo_core.errors import ConfigError

            raise ConfigError(
                f"extra_config may not set {sorted(overridden)}: wflo relies on an "
                "idempotent acks=all producer for exactly-once, ordered delivery"
            )
        self._config.update(extra_config or {})
        self._config["logger"] = DistinctLogLines()
        self._config["error_cb"] = self._on_error
        # librdkafka's chatter below errors, routed through Python logging, costs a third of the throughput.
        self._config.setdefault("log_level", 3)
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._all_down: KafkaError | None = None
        """The producer's last report that every broker is down, until a broker answers again."""
        if connect:
            self.connect()

    def connect(self) -> None:
        """Start connecting without waiting, so that a ``deliver`` later on does not wait for it.

        A fresh idempotent producer sends nothing before it holds a producer id, and it asks for one
        only once a broker connection is up: produced to at once, it waited ~0.5 s (librdkafka retries
        every 500 ms), and merely created, up to 1 s (it connects when first needed). A metadata request
        brings a connection up now: a step that connects at its start publishes on its way out at once.
        """
        with self._lock:
            producer = self._ready_producer()
        _metadata_answers(producer, _NUDGE_S)  # no answer yet, as intended (or the broker is down: deliver tells)

    def _ready_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
        return self._producer

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._all_down = err

    def _unreachable(self, producer: Producer) -> str | None:
        """Why no broker can take messages now, if the producer said so and a metadata request agrees:
        a sink that connected ahead (a step's) then fails its batch at once instead of waiting out its
        delivery timeout on a broker that is down."""
        producer.poll(0)  # serves the producer's error reports
        if self._all_down is None:
            return None
        if not _metadata_answers(producer, _PROBE_S):
            return f"Kafka unreachable: {_describe(self._all_down)}"
        self._all_down = None
        return None

    def deliver(self, messages: Sequence[OutboundMessage]) -> Sequence[Delivery]:
        with self._lock:
            producer = self._ready_producer()
            if messages and (down := self._unreachable(producer)) is not None:
                return [Delivery(m.event_id, down) for m in messages]
            # The callback keeps failures only: a success costs one comparison, as in a raw producer.
            # Once every message has reported (the flush, or a purge of what it left queued), any
            # message without a failure was acknowledged. (``delivery.report.only.error`` would save
            # the success callbacks, but then flush() wakes only every 10 ms: a batch of 500 got slower.)
            failed: list[tuple[KafkaError, bytes]] = []
            refused: dict[int, Delivery] = {}

            def on_delivery(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    failed.append((err, msg.value() or b""))

            produce, poll = producer.produce, producer.poll
            for i, m in enumerate(messages):
                try:  # the common path, kept inline: it is what the benchmark compares to raw produce()
                    produce(m.topic, m.value, m.key, on_delivery=on_delivery,
                            headers=[*_HEADERS, *m.headers] if m.headers else _HEADERS)
                except (BufferError, KafkaException):
                    refusal = self._produce_patiently(producer, m, on_delivery)
                    if refusal is not None:
                        refused[i] = refusal
                # Serves delivery reports as they come, as the raw idiom does: left to the flush, 20,000
                # callbacks ran after the last acknowledgement (0.88x raw in one batch; 0.98x polled).
                poll(0)
            late = None
            if messages and producer.flush(self.delivery_timeout_s + _FLUSH_GRACE_S):
                # Reports still missing: purge the local queue so those report (as failed). In-flight
                # requests are not purged (that would break the idempotent producer's sequence).
                late = f"no delivery report within {self.delivery_timeout_s:g}s"
                producer.purge(in_queue=True, in_flight=False, blocking=False)
                if producer.flush(_FLUSH_GRACE_S):  # still unaccounted: nothing counts as delivered
                    self._producer = None
                    return [Delivery(m.event_id, late) for m in messages]
            if not failed and not refused:
                return AllDelivered(messages)
            if any(err.fatal() for err, _ in failed):
                logger.warning("Kafka producer hit a fatal error; a new one will be created")
                self._producer = None  # an idempotent producer that hit a fatal error cannot be reused
            return _outcomes(messages, failed, refused, late)

    @staticmethod
    def _produce_patiently(producer: Producer, m: OutboundMessage, on_delivery: Any) -> Delivery | None:
        """Queue one message, waiting while the local queue is full; a Delivery if it is refused."""
        headers = _headers(m)
        while True:
            try:
                producer.produce(m.topic, m.value, m.key, on_delivery=on_delivery, headers=headers)
                return None
            except BufferError:  # local queue full: let delivery reports drain it
                producer.poll(0.1)
            except KafkaException as exc:
                err = exc.args[0]
                return Delivery(m.event_id, _describe(err), err.code() in PERMANENT_ERROR_CODES)

    def close(self) -> None:
        """Flush what is still queued (bounded by the delivery timeout) and drop the producer."""
        with self._lock:
            if self._producer is not None:
                left = self._producer.flush(self.delivery_timeout_s + _FLUSH_GRACE_S)
                if left:
                    logger.warning("closed the Kafka producer with %d undelivered messages", left)
                self._producer, self._all_down = None, None


def _metadata_answers(producer: Producer, timeout_s: float) -> bool:
    """Ask for the cluster's metadata: whether a broker answered within ``timeout_s`` (the request, and
    the connection it needs, go ahead either way)."""
    try:
        producer.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def _headers(m: OutboundMessage) -> list[tuple[str, str | bytes | None]]:
    return [*_HEADERS, *m.headers] if m.headers else _HEADERS


def _outcomes(
    messages: Sequence[OutboundMessage],
    failed: list[tuple[KafkaError, bytes]],
    refused: dict[int, Delivery],
    late: str | None,
) -> list[Delivery]:
    """Each message's fate, failures matched by value: event ids make values unique, and repeats of
    one value share a key, hence a partition, so their reports arrive in produce order."""
    indexes: dict[bytes, deque[int]] = {}
    for i, m in enumerate(messages):
        if i not in refused:
            indexes.setdefault(m.value, deque()).append(i)
    outcome: dict[int, Delivery] = dict(refused)
    for err, value in failed:
        i = indexes[value].popleft()
        purged = err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
        reason = late if purged and late else _describe(err)
        outcome[i] = Delivery(messages[i].event_id, reason, err.code() in PERMANENT_ERROR_CODES)
    return [outcome.get(i) or Delivery(m.event_id) for i, m in enumerate(messages)]


def _describe(err: KafkaError) -> str:
    return f"{err.name()}: {err.str()}"
