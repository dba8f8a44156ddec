"""The production sink: confluent-kafka with an idempotent, ``acks=all`` producer.

``deliver`` produces a batch keyed by run id (a run's events share a partition, so they stay in
order), then waits for every delivery report: a message counts as delivered only when the broker
acknowledged it. Errors the broker will repeat forever (message too large, invalid record, policy)
are ``permanent``; everything else (broker down, timeouts) is retryable.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from wflo_core.events.sinks.base import Delivery, OutboundMessage

logger = logging.getLogger("wflo.events.kafka")

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
    ) -> None:
        """``delivery_timeout_s`` bounds how long ``deliver`` waits while the broker is unreachable.

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
        self._config["logger"] = logger
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def _ready_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
        return self._producer

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        with self._lock:
            producer = self._ready_producer()
            errors: dict[int, KafkaError] = {}
            acked = bytearray(len(messages))
            refused: dict[int, Delivery] = {}
            # One shared callback finds its message by value (event ids make values unique; repeats
            # share a key, hence a partition, so they report in produce order). A closure per
            # message would keep N small objects alive for the GC to walk and costs ~30 % at 50k.
            first_index: dict[bytes, int] = {}
            repeat_indexes: dict[bytes, deque[int]] = {}

            def on_delivery(err: KafkaError | None, msg: Message) -> None:
                value = msg.value() or b""
                index = first_index.pop(value, None)
                if index is None:
                    index = repeat_indexes[value].popleft()
                if err is None:
                    acked[index] = 1
                else:
                    errors[index] = err

            produce, poll = producer.produce, producer.poll
            for i, m in enumerate(messages):
                value = m.value
                if first_index.setdefault(value, i) != i:
                    repeat_indexes.setdefault(value, deque()).append(i)
                try:  # the common path, kept inline: it is what the benchmark compares to raw produce()
                    if m.headers:
                        produce(m.topic, value, m.key, on_delivery=on_delivery, headers=list(m.headers))
                    else:
                        produce(m.topic, value, m.key, on_delivery=on_delivery)
                except (BufferError, KafkaException):
                    refusal = self._produce_patiently(producer, m, on_delivery)
                    if refusal is not None:
                        refused[i] = refusal
                        self._forget(value, i, first_index, repeat_indexes)
                poll(0)
            left = producer.flush(self.delivery_timeout_s + _FLUSH_GRACE_S)
            if any(err.fatal() for err in errors.values()):
                logger.warning("Kafka producer hit a fatal error; a new one will be created")
                self._producer = None  # an idempotent producer that hit a fatal error cannot be reused
            return [
                Delivery(m.event_id) if acked[i] else self._outcome(i, m.event_id, errors, refused, left)
                for i, m in enumerate(messages)
            ]

    def _outcome(
        self,
        i: int,
        event_id: str,
        errors: dict[int, KafkaError],
        refused: dict[int, Delivery],
        left: int,
    ) -> Delivery:
        if i in errors:
            err = errors[i]
            return Delivery(event_id, _describe(err), err.code() in PERMANENT_ERROR_CODES)
        if i in refused:
            return refused[i]
        return Delivery(
            event_id, f"no delivery report within {self.delivery_timeout_s:g}s ({left} messages still queued)"
        )

    @staticmethod
    def _forget(
        value: bytes, index: int, first_index: dict[bytes, int], repeat_indexes: dict[bytes, deque[int]]
    ) -> None:
        if first_index.get(value) == index:
            del first_index[value]
        elif value in repeat_indexes:
            repeat_indexes[value].remove(index)

    @staticmethod
    def _produce_patiently(producer: Producer, m: OutboundMessage, on_delivery: Any) -> Delivery | None:
        """Queue one message, waiting while the local queue is full; a Delivery if it is refused."""
        while True:
            try:
                if m.headers:
                    producer.produce(
                        m.topic, m.value, m.key, on_delivery=on_delivery, headers=list(m.headers)
                    )
                else:
                    producer.produce(m.topic, m.value, m.key, on_delivery=on_delivery)
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
                self._producer = None


def _describe(err: KafkaError) -> str:
    return f"{err.name()}: {err.str()}"
