"""The harness's services are real: connect and round-trip through each one."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration


def test_postgres_round_trip(fresh_postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(fresh_postgres_url) as conn:
        conn.execute("CREATE TABLE t (id int primary key, amount numeric(20,10))")
        conn.execute("INSERT INTO t VALUES (1, 0.1234567891)")
        (amount,) = conn.execute("SELECT amount FROM t").fetchone()
    assert str(amount) == "0.1234567891"


def test_redis_round_trip(redis_client) -> None:
    redis_client.set("wflo:probe", b"hello", ex=10)
    assert redis_client.get("wflo:probe") == b"hello"
    assert 0 < redis_client.ttl("wflo:probe") <= 10


def test_kafka_round_trip(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"probe-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(5):
        producer.produce(topic, key=b"run-1", value=f"m{i}".encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[bytes] = []
    for _ in range(100):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
        if len(got) == 5:
            break
    consumer.close()
    assert got == [f"m{i}".encode() for i in range(5)]  # one key -> one partition -> in order
