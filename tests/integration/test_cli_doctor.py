"""``wflo doctor`` against real Postgres, Redis, Kafka and dockerd: what it flags, and that the fix it
names makes the check pass."""

from __future__ import annotations

import uuid

import pytest

from wflo_core.config import load_settings
from wflo_core.doctor import run_checks
from wflo_core.events.topics import create_topics
from wflo_core.ledger.migrations import upgrade

pytestmark = pytest.mark.integration


def checks() -> dict[str, object]:
    return {c.name: c for c in run_checks(load_settings())}


def test_doctor_flags_then_clears_each_production_service(
    fresh_postgres_url, redis_url, kafka_bootstrap, docker_host, monkeypatch
) -> None:
    prefix = f"doctor{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("WFLO_DATABASE_URL", fresh_postgres_url)
    monkeypatch.setenv("WFLO_REDIS_URL", redis_url)
    monkeypatch.setenv("WFLO_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("WFLO_KAFKA_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("WFLO_DOCKER_HOST", docker_host)
    monkeypatch.setenv("WFLO_SANDBOX_IMAGE", f"wflo-doctor-missing-{prefix}:latest")

    before = checks()
    assert not before["ledger"].ok and before["ledger"].fix == "run `wflo db upgrade`"
    assert "none (empty)" in before["ledger"].detail
    assert before["redis"].ok and "answers PING" in before["redis"].detail
    assert not before["kafka"].ok and f"topic {prefix}.events missing" in before["kafka"].detail
    assert before["kafka"].fix == "run `wflo events topics` to create wflo's topics"
    assert not before["sandbox"].ok and "image wflo-doctor-missing" in before["sandbox"].detail
    assert "scripts/build_sandbox_image.sh" in before["sandbox"].fix

    upgrade(fresh_postgres_url)
    create_topics(kafka_bootstrap, [f"{prefix}.events"], partitions=1)
    after = checks()
    assert after["ledger"].ok and "schema at head" in after["ledger"].detail
    assert after["kafka"].ok and f"topic {prefix}.events present" in after["kafka"].detail
    assert "@" in fresh_postgres_url and "@" not in after["ledger"].detail  # user info never shown
