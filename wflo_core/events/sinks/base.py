"""The interface every event sink implements: deliver a batch, report each message's fate."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol, overload, runtime_checkable

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


_new_tuple = tuple.__new__


class AllDelivered(Sequence[Delivery]):
    """The deliveries of a batch whose every message was acknowledged, each made when it is read.

    A sink's usual answer. Built up front, one Delivery per message (50,000 in a large batch) cost
    more than producing them: the allocations set off garbage collections that walked the heap.
    """

    __slots__ = ("_messages",)
    __hash__ = None  # type: ignore[assignment]  # compares by value, as a list does

    def __init__(self, messages: Sequence[OutboundMessage]) -> None:
        self._messages = messages

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> Delivery: ...

    @overload
    def __getitem__(self, index: slice) -> list[Delivery]: ...

    def __getitem__(self, index: int | slice) -> Delivery | list[Delivery]:
        if isinstance(index, slice):
            return list(AllDelivered(self._messages[index]))
        return Delivery(self._messages[index].event_id)

    def __iter__(self) -> Iterator[Delivery]:
        for m in self._messages:
            yield _new_tuple(Delivery, (m.event_id, None, False))  # skips NamedTuple's Python __new__

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return f"AllDelivered({len(self)} messages)"


@runtime_checkable
class EventSink(Protocol):
    """Somewhere events are durably written: Kafka, a JSONL file, or memory (tests)."""

    def deliver(self, messages: Sequence[OutboundMessage]) -> Sequence[Delivery]:
        """Write ``messages`` in order; one :class:`Delivery` per message, in the same order.

        Blocks until every message is acknowledged or has failed; never raises for a delivery
        failure (the result says so), so callers decide what to retry.
        """
        ...

    def close(self) -> None:
        """Flush what is buffered and release the connection or file; a later ``deliver`` opens it again."""
        ...
