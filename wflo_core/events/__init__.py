"""Events: versioned CloudEvents, a transactional outbox, sinks (Kafka, JSONL, memory), readers.

Producers call ``emit(session, event)`` inside the ledger transaction that caused the event;
``OutboxRelay(ledger, sink).relay_pending()`` publishes what was committed.
"""

from wflo_core.events.consumer import EventDeduplicator, cost_by_run, decode_records, unique_events
from wflo_core.events.envelope import CloudEvent, decode_event, encode_event, new_event
from wflo_core.events.outbox import emit, pending_count
from wflo_core.events.relay import OutboxRelay, RelayStats
from wflo_core.events.schemas import (
    EVENT_TYPES,
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceededEvent,
    BudgetThresholdCrossed,
    EventData,
    EventDeadLettered,
    LLMCallCacheHit,
    LLMCallOverBound,
    LLMCallSettled,
    RunCanceled,
    RunFailed,
    RunStarted,
    RunSucceeded,
    SandboxFinished,
    SandboxKilled,
    StepFailed,
    StepRetried,
    StepStarted,
    StepSucceeded,
)
from wflo_core.events.sinks import (
    Delivery,
    EventSink,
    JsonlEventSink,
    MemoryEventSink,
    OutboundMessage,
    build_event_sink,
)
from wflo_core.events.topics import TopicLayout, create_topics, dead_letter_topic, ensure_topics

__all__ = [
    "EVENT_TYPES",
    "ApprovalDecided",
    "ApprovalRequested",
    "BudgetExceededEvent",
    "BudgetThresholdCrossed",
    "CloudEvent",
    "Delivery",
    "EventData",
    "EventDeadLettered",
    "EventDeduplicator",
    "EventSink",
    "JsonlEventSink",
    "LLMCallCacheHit",
    "LLMCallOverBound",
    "LLMCallSettled",
    "MemoryEventSink",
    "OutboundMessage",
    "OutboxRelay",
    "RelayStats",
    "RunCanceled",
    "RunFailed",
    "RunStarted",
    "RunSucceeded",
    "SandboxFinished",
    "SandboxKilled",
    "StepFailed",
    "StepRetried",
    "StepStarted",
    "StepSucceeded",
    "TopicLayout",
    "build_event_sink",
    "cost_by_run",
    "create_topics",
    "dead_letter_topic",
    "decode_event",
    "decode_records",
    "emit",
    "encode_event",
    "ensure_topics",
    "new_event",
    "pending_count",
    "unique_events",
]
