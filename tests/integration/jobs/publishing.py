"""A job whose steps publish their events on their way out, in real step processes (reconstructable)."""

from __future__ import annotations

import time

import dagster as dg

from wflo_core.events import StepSucceeded
from wflo_dagster.resources.events import EventSinkResource

STEP_S = 0.6
"""Each step's own work: longer than its sink needs to connect, shorter than a fresh producer's wait
for its producer id plus the publish timeout below."""
PUBLISH_TIMEOUT_S = 0.4
"""Below the ~0.5 s a producer built at the publish waits for its producer id."""


@dg.op
def first(events: EventSinkResource) -> None:
    time.sleep(STEP_S)
    events.emit(StepSucceeded(run_id="publishing", step_key="first"))


@dg.op
def second(events: EventSinkResource) -> None:
    time.sleep(STEP_S)
    events.emit(StepSucceeded(run_id="publishing", step_key="second"))


@dg.job(resource_defs={"events": EventSinkResource(delivery_timeout_seconds=PUBLISH_TIMEOUT_S)})
def publishing_job() -> None:
    first()
    second()
