"""The daemon-side outbox relay: each tick publishes what steps committed but could not publish."""

from __future__ import annotations

import dagster as dg

from wflo_dagster.resources.events import EventSinkResource


def outbox_relay_sensor(
    *,
    name: str = "wflo_outbox_relay",
    minimum_interval_seconds: int = 30,
    max_seconds_per_tick: float = 30.0,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """A sensor (no job) relaying pending outbox events through the ``events`` resource."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Publishes pending wflo events from the ledger outbox to Kafka / the JSONL file.",
    )
    def _sensor(context: dg.SensorEvaluationContext, events: EventSinkResource) -> dg.SkipReason:
        stats = events.relay(max_seconds=max_seconds_per_tick)
        summary = (
            f"published {stats.published}, dead-lettered {stats.dead_lettered}, "
            f"waiting {stats.failed + stats.deferred}"
        )
        if stats.busy:
            summary = "another relay is running"
        elif stats.errors:
            context.log.warning(f"outbox relay: {summary}; last error: {stats.errors[-1]}")
        return dg.SkipReason(summary)

    return _sensor
