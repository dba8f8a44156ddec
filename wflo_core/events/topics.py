"""Where events go on Kafka, and creating those topics with the admin API.

Layout for prefix ``wflo`` (``WFLO_KAFKA_TOPIC_PREFIX``):

============================  ====================================================================
``wflo.events``               every wflo event, keyed by run id: one run's events share a partition
                              and so stay in order, across all event types
``wflo.events.dlq``           ``io.wflo.event.dead_lettered`` records for events that can never be
                              delivered (too large, rejected by the broker), with the reason
``wflo.triggers``             default input topic of the Kafka trigger sensor (one message = one run)
``wflo.triggers.dlq``         trigger messages the sensor could not turn into a run, with the reason
============================  ====================================================================

Any other input topic ``T`` dead-letters to ``T.dlq``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wflo_core.config import WfloSettings
from wflo_core.errors import ConfigError, EventError

DEAD_LETTER_SUFFIX = ".dlq"
_ADMIN_TIMEOUT_S = 15.0


def dead_letter_topic(topic: str) -> str:
    return topic + DEAD_LETTER_SUFFIX


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """The topic names for one prefix."""

    prefix: str = "wflo"

    @classmethod
    def from_settings(cls, settings: WfloSettings) -> TopicLayout:
        return cls(settings.kafka_topic_prefix)

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def events_dead_letter(self) -> str:
        return dead_letter_topic(self.events)

    @property
    def triggers(self) -> str:
        return f"{self.prefix}.triggers"

    @property
    def triggers_dead_letter(self) -> str:
        return dead_letter_topic(self.triggers)

    @property
    def all(self) -> tuple[str, ...]:
        return (self.events, self.events_dead_letter, self.triggers, self.triggers_dead_letter)


def create_topics(
    bootstrap_servers: str,
    topics: tuple[str, ...] | list[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
) -> list[str]:
    """Create missing topics; returns the ones created (existing ones are left as they are)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    if partitions < 1:
        raise ConfigError(f"partitions must be >= 1, got {partitions}; set WFLO_KAFKA_PARTITIONS")
    admin = AdminClient(
        # the stubs type config values as scalars; librdkafka's binding also takes a Logger here
        {"bootstrap.servers": bootstrap_servers, "logger": logging.getLogger("wflo.events.kafka")}  # type: ignore[dict-item]
    )
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor) for t in topics],
        request_timeout=_ADMIN_TIMEOUT_S,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=_ADMIN_TIMEOUT_S)
            created.append(topic)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise EventError(
                    f"could not create Kafka topic {topic!r} on {bootstrap_servers}: {err.args[0].str()}",
                    topic=topic,
                ) from None
        except Exception as err:  # the future times out when the broker is unreachable
            raise EventError(
                f"could not create Kafka topic {topic!r} on {bootstrap_servers}: {err!r}; "
                "is the broker running?",
                topic=topic,
            ) from None
    return created


def ensure_topics(settings: WfloSettings) -> list[str]:
    """Create the layout's topics on the configured broker (``wflo events topics``)."""
    if not settings.kafka_bootstrap_servers:
        raise ConfigError(
            "WFLO_KAFKA_BOOTSTRAP_SERVERS is not set; events go to the JSONL file "
            f"{settings.events_path} and need no topics"
        )
    return create_topics(
        settings.kafka_bootstrap_servers,
        TopicLayout.from_settings(settings).all,
        partitions=settings.kafka_partitions,
    )
