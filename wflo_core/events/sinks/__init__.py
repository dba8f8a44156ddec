"""Event sinks: Kafka in production, a JSONL file embedded, memory in tests."""

from __future__ import annotations

from wflo_core.config import WfloSettings
from wflo_core.events.breaker import PublishBreaker
from wflo_core.events.sinks.base import Delivery, EventSink, OutboundMessage
from wflo_core.events.sinks.jsonl import JsonlEventSink
from wflo_core.events.sinks.memory import MemoryEventSink


def build_event_sink(settings: WfloSettings, *, delivery_timeout_s: float = 30.0) -> EventSink:
    """Kafka when ``WFLO_KAFKA_BOOTSTRAP_SERVERS`` is set, else ``WFLO_HOME/events.jsonl``."""
    if settings.kafka_bootstrap_servers:
        from wflo_core.events.sinks.kafka import KafkaEventSink

        return KafkaEventSink(settings.kafka_bootstrap_servers, delivery_timeout_s=delivery_timeout_s)
    return JsonlEventSink(settings.events_path)


def publish_breaker(settings: WfloSettings) -> PublishBreaker:
    """The in-step relay's breaker for the sink ``settings`` choose (see ``events.breaker``)."""
    return PublishBreaker.for_target(settings.home, settings.kafka_bootstrap_servers or str(settings.events_path))


__all__ = [
    "Delivery",
    "EventSink",
    "JsonlEventSink",
    "MemoryEventSink",
    "OutboundMessage",
    "build_event_sink",
    "publish_breaker",
]
