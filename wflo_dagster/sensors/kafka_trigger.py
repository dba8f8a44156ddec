"""A sensor factory that turns messages on a Kafka topic into runs, each offset at most once.

Cursor: ``{"topic": T, "offsets": {"<partition>": <next offset>}}`` (Kafka's committed-offset
convention), advanced only past messages that became a run request or reached the dead-letter
topic. ``run_key = "<topic>/<partition>/<offset>"``, so even a message read twice (a tick whose
cursor was not stored) launches one run. A message that cannot become a run request goes to
``<topic>.dlq`` with the reason in its headers, and the sensor moves on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from wflo_core.config import load_settings
from wflo_core.errors import ConfigError, EventError
from wflo_core.events.reader import Record, read_kafka
from wflo_core.events.sinks.base import OutboundMessage
from wflo_core.events.sinks.kafka import KafkaEventSink
from wflo_core.events.topics import TopicLayout, dead_letter_topic

REASON_HEADER = "wflo-dlq-reason"
SOURCE_HEADER = "wflo-dlq-source"
_MAX_REASON_CHARS = 1000


class TriggerPayload(BaseModel):
    """The default message format: a JSON object saying how to configure and tag the run."""

    model_config = ConfigDict(extra="forbid")

    run_config: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    partition_key: str | None = None


def run_request_from_json(record: Record) -> dg.RunRequest:
    """``{"run_config": {...}, "tags": {...}, "partition_key": "..."}`` -> a RunRequest; else raises."""
    payload = TriggerPayload.model_validate_json(record.value)
    return dg.RunRequest(
        run_config=payload.run_config, tags=payload.tags, partition_key=payload.partition_key
    )


def read_cursor(cursor: str | None, topic: str) -> dict[int, int]:
    if not cursor:
        return {}
    try:
        state = json.loads(cursor)
        if state.get("topic") != topic:
            return {}
        return {int(p): int(o) for p, o in state["offsets"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ConfigError(
            f"Kafka trigger sensor cursor {cursor[:200]!r} is not "
            f'{{"topic": ..., "offsets": {{"<partition>": <offset>}}}}: {err}; reset the '
            "sensor's cursor in the Dagster UI"
        ) from None


def write_cursor(topic: str, offsets: dict[int, int]) -> str:
    return json.dumps({"topic": topic, "offsets": {str(p): o for p, o in sorted(offsets.items())}})


def kafka_trigger_sensor(
    *,
    name: str,
    target: Any,
    topic: str | None = None,
    bootstrap_servers: str | None = None,
    to_run_request: Callable[[Record], dg.RunRequest] = run_request_from_json,
    max_messages: int = 50,
    poll_timeout_seconds: float = 10.0,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """Build a sensor launching ``target`` (a job or asset selection) once per message on ``topic``.

    ``topic`` and ``bootstrap_servers`` default to ``<WFLO_KAFKA_TOPIC_PREFIX>.triggers`` and
    ``WFLO_KAFKA_BOOTSTRAP_SERVERS``, read at tick time. Each tick reads at most ``max_messages``
    for at most ``poll_timeout_seconds`` (keep it well under Dagster's 60 s tick timeout).
    """
    if poll_timeout_seconds >= 45:
        raise ConfigError(
            f"poll_timeout_seconds={poll_timeout_seconds} leaves no room in Dagster's 60 s "
            "sensor tick; use at most 30"
        )

    @dg.sensor(
        name=name,
        target=target,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Launches one run per Kafka message ({name}).",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        settings = load_settings()
        servers = bootstrap_servers or settings.kafka_bootstrap_servers
        if not servers:
            return dg.SkipReason("WFLO_KAFKA_BOOTSTRAP_SERVERS is not set; nothing to read")
        source = topic or TopicLayout.from_settings(settings).triggers
        return evaluate_tick(context, servers, source, to_run_request, max_messages, poll_timeout_seconds)

    return _sensor


def evaluate_tick(
    context: dg.SensorEvaluationContext,
    bootstrap_servers: str,
    topic: str,
    to_run_request: Callable[[Record], dg.RunRequest],
    max_messages: int,
    poll_timeout_seconds: float,
) -> dg.SensorResult | dg.SkipReason:
    offsets = read_cursor(context.cursor, topic)
    started = time.monotonic()
    requests: list[tuple[Record, dg.RunRequest]] = []
    rejected: list[tuple[Record, str]] = []
    try:
        for record in read_kafka(
            bootstrap_servers, topic, start=offsets, max_records=max_messages, timeout_s=poll_timeout_seconds
        ):
            try:
                request = to_run_request(record)
            except Exception as err:  # noqa: BLE001 - any bad message is dead-lettered, never fatal
                rejected.append((record, f"{type(err).__name__}: {err}"[:_MAX_REASON_CHARS]))
                continue
            tags = {
                **request.tags,
                "kafka/topic": record.topic,
                "kafka/partition": str(record.partition),
                "kafka/offset": str(record.offset),
            }
            requests.append((record, request.with_replaced_attrs(run_key=record.position, tags=tags)))
    except EventError as err:
        if not requests and not rejected:
            context.log.warning(f"Kafka trigger: {err}")
            return dg.SkipReason(str(err))
        context.log.warning(f"Kafka trigger: read stopped early: {err}")

    stuck = _dead_letter(context, bootstrap_servers, topic, rejected, poll_timeout_seconds)
    for record, _ in requests + rejected:
        if record.partition in stuck and record.offset >= stuck[record.partition]:
            continue
        offsets[record.partition] = max(offsets.get(record.partition, 0), record.offset + 1)
    runs = [r for rec, r in requests if not (rec.partition in stuck and rec.offset >= stuck[rec.partition])]
    context.log.info(
        f"Kafka trigger: {len(runs)} run requests, {len(rejected)} dead-lettered from {topic} "
        f"in {time.monotonic() - started:.1f}s"
    )
    cursor = write_cursor(topic, offsets)
    if not runs:
        return dg.SensorResult(skip_reason=f"no new runnable messages on {topic}", cursor=cursor)
    return dg.SensorResult(run_requests=runs, cursor=cursor)


def _dead_letter(
    context: dg.SensorEvaluationContext,
    bootstrap_servers: str,
    topic: str,
    rejected: list[tuple[Record, str]],
    timeout_s: float,
) -> dict[int, int]:
    """Send rejected messages to ``<topic>.dlq``; returns partition -> first offset that failed to go."""
    if not rejected:
        return {}
    dlq = dead_letter_topic(topic)
    for record, reason in rejected:
        context.log.warning(
            f"Kafka trigger: message {record.position} is not a valid run request, "
            f"sending it to {dlq}: {reason}"
        )
    sink = KafkaEventSink(bootstrap_servers, delivery_timeout_s=max(1.0, timeout_s))
    try:
        deliveries = sink.deliver(
            [
                OutboundMessage(
                    dlq,
                    record.key.decode(errors="replace") if record.key else None,
                    record.value,
                    record.position,
                    ((REASON_HEADER, reason.encode()), (SOURCE_HEADER, record.position.encode())),
                )
                for record, reason in rejected
            ]
        )
    finally:
        sink.close()
    stuck: dict[int, int] = {}
    for (record, _), delivery in zip(rejected, deliveries, strict=True):
        if not delivery.ok:
            context.log.error(
                f"Kafka trigger: could not dead-letter {record.position} ({delivery.error}); "
                "it will be read again next tick"
            )
            stuck[record.partition] = min(stuck.get(record.partition, record.offset), record.offset)
    return stuck
