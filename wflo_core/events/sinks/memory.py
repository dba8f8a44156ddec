"""An in-process sink for tests: keeps messages in a list, can pretend to be down."""

from __future__ import annotations

from collections.abc import Sequence

from wflo_core.events.envelope import CloudEvent, decode_event
from wflo_core.events.sinks.base import Delivery, OutboundMessage


class MemoryEventSink:
    """Records delivered messages; ``available = False`` makes every delivery fail (retryable)."""

    def __init__(self, *, max_message_bytes: int = 1_000_000) -> None:
        self.max_message_bytes = max_message_bytes
        self.available = True
        self.messages: list[OutboundMessage] = []

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        results = []
        for m in messages:
            if len(m.value) > self.max_message_bytes:
                results.append(
                    Delivery(
                        m.event_id,
                        f"message of {len(m.value)} bytes exceeds the {self.max_message_bytes}-byte limit",
                        permanent=True,
                    )
                )
            elif not self.available:
                results.append(Delivery(m.event_id, "sink unavailable"))
            else:
                self.messages.append(m)
                results.append(Delivery(m.event_id))
        return results

    def events(self, topic: str | None = None) -> list[CloudEvent]:
        return [decode_event(m.value) for m in self.messages if topic is None or m.topic == topic]

    def close(self) -> None:
        return None
