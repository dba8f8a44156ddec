"""The interface every event sink implements: deliver a batch, report each message's fate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from wflo_core.events.envelope import CloudEvent, encode_event


class OutboundMessage(NamedTuple):
    """One record to write: the encoded CloudEvent, its topic and partition key.

    A NamedTuple: the relay builds one per event, and a frozen dataclass costs four times as much.
    """

    topic: str
    key: str | None
    value: bytes
    event_id: str
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, event: CloudEvent, topic: str) -> OutboundMessage:
        return cls(topic, event.partitionkey, encode_event(event), event.id)


class Delivery(NamedTuple):
    """What happened to one message. ``permanent`` errors will fail again on retry: dead-letter them.

    A NamedTuple: sinks build one per message, so construction cost shows in throughput.
    """

    event_id: str
    error: str | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class EventSink(Protocol):
    """Somewhere events are durably written: Kafka, a JSONL file, or memory (tests)."""

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        """Write ``messages`` in order; one :class:`Delivery` per message, in the same order.

        Blocks until every message is acknowledged or has failed; never raises for a delivery
        failure (the result says so), so callers decide what to retry.
        """
        ...

    def close(self) -> None:
        """Flush what is buffered and release the connection or file; a later ``deliver`` opens it again."""
        ...
