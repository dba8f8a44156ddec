"""Reading records back: from Kafka (by partition offsets, bounded in time) or the JSONL file.

Used by ``wflo events tail``, the Kafka trigger sensor and consumers. A fresh consumer is made per
read and partitions are ``assign``-ed explicitly: the caller's offsets are the source of truth,
nothing is committed to a consumer group.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from wflo_core.errors import EventError

logger = logging.getLogger("wflo.events.kafka")


@dataclass(frozen=True, slots=True)
class Record:
    """One raw record and where it came from (``topic/partition/offset`` or ``file:line``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def read_kafka(
    bootstrap_servers: str,
    topic: str,
    *,
    start: Mapping[int, int] | None = None,
    max_records: int | None = None,
    timeout_s: float = 10.0,
    follow: bool = False,
) -> Iterator[Record]:
    """Records of ``topic`` from ``start`` (partition -> next offset; default: the beginning).

    Without ``follow`` it stops once every partition reached the end it had when the read began,
    after ``max_records``, or after ``timeout_s`` — whichever comes first.
    """
    from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"wflo-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "logger": logger,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=max(timeout_s, 1.0))
        except KafkaException as err:
            raise EventError(
                f"cannot reach Kafka at {bootstrap_servers} to read {topic!r}: {err.args[0].str()}",
                topic=topic,
            ) from None
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise EventError(
                f"Kafka topic {topic!r} does not exist on {bootstrap_servers}; create it with "
                "`wflo events topics`",
                topic=topic,
            )
        assignment, ends = [], {}
        for p in sorted(described.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            begin = max(start.get(p, low) if start else low, low)
            if follow and start is None:
                begin = OFFSET_END
            ends[p] = high
            if follow or begin < high:
                assignment.append(TopicPartition(topic, p, begin))
        active = {tp.partition for tp in assignment}
        consumer.assign(assignment)
        count = 0
        while active and (follow or time.monotonic() < deadline):
            batch = min(500, max_records - count) if max_records else 500
            for msg in consumer.consume(
                batch, timeout=0.5 if follow else max(0.0, min(0.5, deadline - time.monotonic()))
            ):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise EventError(f"reading {topic!r} failed: {error.str()}", topic=topic)
                p, offset = msg.partition(), msg.offset()
                assert p is not None and offset is not None  # a consumed record without an error has both
                yield Record(topic, p, offset, msg.key(), msg.value() or b"")
                count += 1
                if not follow and offset + 1 >= ends[p]:
                    active.discard(p)
                if max_records and count >= max_records:
                    return
    finally:
        consumer.close()


def read_jsonl(path: Path, *, follow: bool = False, poll_s: float = 0.5) -> Iterator[Record]:
    """Complete lines of the JSONL event file; with ``follow`` keeps waiting for new ones."""
    line_no = 0
    buffered = b""
    path = Path(path)
    while not path.exists():
        if not follow:
            return
        time.sleep(poll_s)
    with path.open("rb") as f:
        while True:
            chunk = f.readline()
            if chunk.endswith(b"\n"):
                line_no += 1
                line = (buffered + chunk).rstrip(b"\r\n")
                buffered = b""
                if line:
                    yield Record(str(path), 0, line_no, None, line)
            elif chunk:
                buffered += chunk  # a writer is mid-line; wait for the rest
            elif follow:
                time.sleep(poll_s)
            else:
                return
