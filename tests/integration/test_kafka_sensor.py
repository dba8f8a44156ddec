"""The Kafka trigger sensor: one run request per message, never twice per offset, bad ones to the DLQ."""

import json
import uuid

import dagster as dg
import pytest
from confluent_kafka import Producer

from wflo_core.events import create_topics
from wflo_core.events.reader import read_kafka
from wflo_dagster.sensors.kafka_trigger import REASON_HEADER, SOURCE_HEADER, kafka_trigger_sensor

pytestmark = pytest.mark.integration


class Question(dg.Config):
    prompt: str


@dg.op
def answer(config: Question) -> str:
    return config.prompt.upper()


@dg.job
def answer_job() -> None:
    answer()


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, value, key=f"k{i}".encode())
    assert producer.flush(10) == 0


def request(prompt: str) -> bytes:
    return json.dumps(
        {"run_config": {"ops": {"answer": {"config": {"prompt": prompt}}}}, "tags": {"team": "ml"}}
    ).encode()


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    topic = f"triggers-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=3)
    return topic


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    return result


def test_one_run_per_message_never_twice_and_bad_messages_dead_lettered(
    kafka_bootstrap: str, topic: str
) -> None:
    sensor = kafka_trigger_sensor(
        name="questions",
        target=answer_job,
        topic=topic,
        bootstrap_servers=kafka_bootstrap,
        max_messages=4,
        poll_timeout_seconds=5,
    )
    produce(
        kafka_bootstrap,
        topic,
        [
            request("a"),
            b"\xffnot json",
            request("b"),
            b'{"run_config": {}, "unexpected": 1}',
            request("c"),
            request("d"),
        ],
    )
    seen_keys: list[str] = []
    prompts: list[str] = []
    with dg.instance_for_test() as instance:
        cursor = None
        for _ in range(4):  # a sensor restart is a new context built from the stored cursor
            result = tick(sensor, instance, cursor)
            for r in result.run_requests or []:
                seen_keys.append(r.run_key)
                prompts.append(r.run_config["ops"]["answer"]["config"]["prompt"])
                assert (
                    r.tags["team"] == "ml"
                    and r.run_key == f"{topic}/{r.tags['kafka/partition']}/{r.tags['kafka/offset']}"
                )
                assert answer_job.execute_in_process(run_config=r.run_config, instance=instance).success
            cursor = result.cursor
        assert sorted(prompts) == ["a", "b", "c", "d"]
        assert len(seen_keys) == len(set(seen_keys)) == 4
        offsets = json.loads(cursor)["offsets"]
        assert sum(offsets.values()) == 6  # every message consumed: 4 runs + 2 dead letters

        again = tick(sensor, instance, cursor)
        assert not again.run_requests and again.cursor == cursor

        produce(kafka_bootstrap, topic, [request("e")])
        later = tick(sensor, instance, cursor)
        assert [r.run_config["ops"]["answer"]["config"]["prompt"] for r in later.run_requests] == ["e"]
        assert later.run_requests[0].run_key not in seen_keys

        dead = list(read_kafka(kafka_bootstrap, f"{topic}.dlq", timeout_s=10))
        assert sorted(r.value for r in dead) == sorted(
            [b"\xffnot json", b'{"run_config": {}, "unexpected": 1}']
        )

        replay = tick(sensor, instance, None)  # a lost cursor re-reads, but the run keys are the same
        replayed = {r.run_key for r in replay.run_requests}
        assert replayed and replayed <= set(seen_keys) | {later.run_requests[0].run_key}


def test_dead_letter_headers_carry_reason_and_source(kafka_bootstrap: str, topic: str) -> None:
    from confluent_kafka import Consumer, TopicPartition

    sensor = kafka_trigger_sensor(
        name="questions2",
        target=answer_job,
        topic=topic,
        bootstrap_servers=kafka_bootstrap,
        poll_timeout_seconds=5,
    )
    produce(kafka_bootstrap, topic, [b"[1, 2, 3]"])
    with dg.instance_for_test() as instance:
        result = tick(sensor, instance, None)
    assert not result.run_requests and json.loads(result.cursor)["offsets"]
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex})
    consumer.assign([TopicPartition(f"{topic}.dlq", p, 0) for p in range(3)])
    msgs = [m for m in consumer.consume(10, 5) if m.error() is None]
    consumer.close()
    [msg] = msgs
    headers = dict(msg.headers())
    assert b"ValidationError" in headers[REASON_HEADER]
    assert headers[SOURCE_HEADER].decode().startswith(f"{topic}/")


def test_unreachable_broker_is_a_skip_not_a_crash(topic: str) -> None:
    from tests.services import free_port

    sensor = kafka_trigger_sensor(
        name="questions3",
        target=answer_job,
        topic=topic,
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        poll_timeout_seconds=2,
    )
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, cursor=None))
    assert isinstance(result, dg.SkipReason) and "cannot reach Kafka" in result.skip_message
