"""Event sinks: Kafka in production, a JSONL file embedded, memory in tests."""

from __future__ import annotations

from wflo_core.config import WfloSettings
from wflo_core.events.breaker import PublishBreaker
from wflo_core.events.sinks.base import Delivery, EventSink, OutboundMessage
from wflo_core.events.sinks.jsonl import JsonlEventSink
from wflo_core.events.sinks.memory import MemoryEventSink


def build_event_sink(settings: WfloSettings, *, delivery_timeout_s: float = 30.0, connect: bool = False) -> EventSink:
    """Kafka when ``WFLO_KAFKA_BOOTSTRAP_SERVERS`` is set, else ``WFLO_HOME/events.jsonl``; ``connect``
    starts a Kafka producer's connection at once (see ``KafkaEventSink.connect``)."""
    if settings.kafka_bootstrap_servers:
        from wflo_core.events.sinks.kafka import KafkaEventSink

        return KafkaEventSink(settings.kafka_bootstrap_servers, delivery_timeout_s=delivery_timeout_s,
                              connect=connect)
    return JsonlEventSink(settings.events_path)


def publish_breaker(settings: WfloSettings) -> PublishBreaker:
    """The in-step relay's breaker for the sink ``settings`` choose (see ``events.breaker``)."""
    return PublishBreaker.for_target(settings.home, settings.kafka_bootstrap_servers or str(settings.events_path))


def in_step_sink(settings: WfloSettings, *, delivery_timeout_s: float) -> EventSink:
    """The sink a step publishes through on its way out, built when the step starts: it connects
    while the step runs (unless the broker is known to be down), so the publish does not wait for it."""
    return build_event_sink(settings, delivery_timeout_s=delivery_timeout_s,
                            connect=not publish_breaker(settings).is_open)


__all__ = [
    "Delivery",
    "EventSink",
    "JsonlEventSink",
    "MemoryEventSink",
    "OutboundMessage",
    "build_event_sink",
    "in_step_sink",
    "publish_breaker",
]
