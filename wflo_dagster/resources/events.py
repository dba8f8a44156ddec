"""``EventSinkResource``: steps and sensors emit events through the outbox and relay them.

``emit`` commits the event to the ledger's outbox (in the caller's session when given one, so it
lands with the ledger change), then makes a short best-effort attempt to publish; whatever is not
published now is published later by the outbox-relay sensor or ``wflo events relay``. A broker
outage therefore never fails a step.
"""

from __future__ import annotations

import logging

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy.orm import Session

from wflo_core.config import WfloSettings
from wflo_core.events import CloudEvent, EventData, EventSink, RelayStats, TopicLayout, emit
from wflo_core.events.relay import (
    CATCH_UP_DELIVERY_TIMEOUT_S,
    IN_STEP_DELIVERY_TIMEOUT_S,
    relay_catch_up,
    relay_in_step,
)
from wflo_core.events.sinks import build_event_sink, in_step_sink, publish_breaker
from wflo_core.ledger.store import Ledger
from wflo_core.services import WfloServices, release_services
from wflo_dagster.resources.wflo import WfloResource, acquire

logger = logging.getLogger("wflo.events")


class EventSinkResource(ConfigurableResource):
    """Emits wflo events (Kafka when ``WFLO_KAFKA_BOOTSTRAP_SERVERS`` is set, else the JSONL file)."""

    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port list; unset = WFLO_KAFKA_BOOTSTRAP_SERVERS or the JSONL file."
    )
    topic_prefix: str | None = Field(default=None, description="Unset = WFLO_KAFKA_TOPIC_PREFIX.")
    delivery_timeout_seconds: float = Field(
        default=IN_STEP_DELIVERY_TIMEOUT_S, gt=0, description="How long a publish may wait for the broker."
    )
    wflo: WfloResource | None = Field(default=None, description="Ledger and Kafka settings.")

    _services: WfloServices | None = PrivateAttr(default=None)
    _sink: EventSink | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        if context.dagster_run is not None:  # a run's step (a sensor publishes through relay())
            settings = self._start().settings  # the sink connects to Kafka while the step runs
            self._sink = in_step_sink(settings, delivery_timeout_s=self.delivery_timeout_seconds)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._services is not None:
            self._relay_in_step()
        if self._sink is not None:
            self._sink.close()
        if self._services is not None:
            release_services(self._services)
        self._sink = self._services = None

    def _start(self) -> WfloServices:
        if self._services is None:
            self._services = acquire(self.wflo, kafka_bootstrap_servers=self.kafka_bootstrap_servers,
                                     kafka_topic_prefix=self.topic_prefix)
        return self._services

    @property
    def settings(self) -> WfloSettings:
        return self._start().settings

    @property
    def topics(self) -> TopicLayout:
        return TopicLayout.from_settings(self.settings)

    @property
    def ledger(self) -> Ledger:
        return self._start().ledger

    def emit(
        self, event: EventData, *, session: Session | None = None, source: str = "/wflo/dagster"
    ) -> CloudEvent:
        """Queue ``event`` (in ``session`` if given; else in its own transaction, then publish)."""
        if session is not None:
            return emit(session, event, topic=self.topics.events, source=source)
        with self.ledger.transaction() as own:
            cloud_event = emit(own, event, topic=self.topics.events, source=source)
        self._relay_in_step()
        return cloud_event

    def relay(self, *, max_seconds: float = 10.0) -> RelayStats:
        """Publish pending events now (the relay sensor's catch-up): failures are logged and left for
        the next pass, and tell the steps' in-step relays whether the broker is up."""
        services = self._start()
        # Not the steps' sink: the catch-up may wait longer for the broker (CATCH_UP_DELIVERY_TIMEOUT_S).
        sink = build_event_sink(services.settings,
                                delivery_timeout_s=max(self.delivery_timeout_seconds, CATCH_UP_DELIVERY_TIMEOUT_S))
        try:
            return relay_catch_up(self.ledger, sink, publish_breaker(services.settings), max_seconds=max_seconds)
        finally:
            sink.close()

    def _relay_in_step(self) -> RelayStats:
        if self._sink is None:  # not a run's step, or not set up: built now, connected if needed
            self._sink = build_event_sink(self.settings, delivery_timeout_s=self.delivery_timeout_seconds)
        return relay_in_step(self.ledger, self._sink, publish_breaker(self.settings))
