"""Health checks behind ``wflo doctor``: every configured service, one line each, what is wrong and the fix.

Nothing secret is ever printed: URLs lose their user info, keys are reported only as set or not set,
and every message is scrubbed of configured secret values before it is shown.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wflo_core.config import WfloSettings
from wflo_core.errors import ConfigError, first_line

_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check: ``fix`` is set exactly when it failed."""

    name: str
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.fix is None


def where(url: str) -> str:
    """A URL without user name and password: enough to see which server is meant."""
    return re.sub(r"://[^/@]*@", "://", url)


def _secrets(settings: WfloSettings) -> list[str]:
    values = [
        s.get_secret_value()
        for s in (settings.openai_api_key, settings.anthropic_api_key, settings.openai_compatible_api_key)
        if s is not None
    ]
    for url in (settings.database_url, settings.redis_url):
        if url and urlsplit(url).password:
            values.append(str(urlsplit(url).password))
    return [v for v in values if v]


def check_ledger(settings: WfloSettings) -> Check:
    url = settings.ledger_url
    if settings.is_embedded and not Path(url.split(":///", 1)[1]).exists():
        return Check(
            "ledger", f"embedded SQLite {where(url)} is created on the first run (or `wflo db upgrade`)"
        )
    from wflo_core.ledger.access import schema_state

    try:
        state = schema_state(url)
    except ConfigError as err:
        return Check(
            "ledger",
            f"{where(url)} unreachable: {err.fields.get('reason')}",
            "start the database server or fix WFLO_DATABASE_URL",
        )
    if not state.at_head:
        return Check(
            "ledger",
            f"{where(url)} is at revision {state.revision or 'none (empty)'}, head is {', '.join(state.heads)}",
            "run `wflo db upgrade`",
        )
    return Check("ledger", f"{where(url)} reachable, schema at head {state.revision}")


def check_redis(settings: WfloSettings) -> Check:
    if not settings.redis_url:
        return Check("redis", "not configured: in-process cache and locks (set WFLO_REDIS_URL to share them)")
    import redis

    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=_TIMEOUT_S, socket_timeout=_TIMEOUT_S
    )
    try:
        client.ping()
    except redis.RedisError as err:
        return Check(
            "redis",
            f"{where(settings.redis_url)} does not answer PING: {first_line(err)}",
            "start Redis or fix WFLO_REDIS_URL",
        )
    finally:
        client.close()
    return Check("redis", f"{where(settings.redis_url)} answers PING")


def check_kafka(settings: WfloSettings) -> Check:
    if not settings.kafka_bootstrap_servers:
        folder = settings.events_path.parent.resolve()
        if folder.exists() and not folder.is_dir():
            return Check("events", f"{folder} is not a directory", "point WFLO_HOME at a writable directory")
        return Check(
            "events",
            f"not on Kafka: events go to {settings.events_path.resolve()} "
            "(set WFLO_KAFKA_BOOTSTRAP_SERVERS to stream them)",
        )
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    servers = settings.kafka_bootstrap_servers
    config: dict[str, Any] = {
        "bootstrap.servers": servers,
        "socket.timeout.ms": int(_TIMEOUT_S * 1000),
        "logger": logging.getLogger("wflo.doctor.kafka"),
    }
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
    except KafkaException as err:
        return Check(
            "kafka",
            f"{servers} gave no metadata: {err.args[0].str() if err.args else err}",
            "start the broker or fix WFLO_KAFKA_BOOTSTRAP_SERVERS",
        )
    events_topic = f"{settings.kafka_topic_prefix}.events"
    if events_topic not in metadata.topics:
        return Check(
            "kafka",
            f"{servers}: {len(metadata.brokers)} broker(s), topic {events_topic} missing",
            "run `wflo events topics` to create wflo's topics",
        )
    return Check("kafka", f"{servers}: {len(metadata.brokers)} broker(s), topic {events_topic} present")


def check_sandbox(settings: WfloSettings) -> Check:
    if settings.effective_sandbox_backend == "process":
        if shutil.which("bwrap") is None:
            return Check(
                "sandbox",
                "process backend needs bubblewrap, which is not installed",
                "`apt-get install bubblewrap`, or set WFLO_SANDBOX_BACKEND=docker",
            )
        return Check("sandbox", "process backend: bubblewrap found")
    from docker.client import DockerClient, from_env
    from docker.errors import DockerException, ImageNotFound

    target = settings.docker_host or "the default Docker socket"
    try:
        client = (
            DockerClient(base_url=settings.docker_host, timeout=int(_TIMEOUT_S))
            if settings.docker_host
            else from_env(timeout=int(_TIMEOUT_S))
        )
        client.ping()
    except DockerException as err:
        return Check(
            "sandbox",
            f"Docker engine at {target} unreachable: {first_line(err)}",
            "start dockerd, set WFLO_DOCKER_HOST, or use WFLO_SANDBOX_BACKEND=process",
        )
    try:
        client.images.get(settings.sandbox_image)
    except ImageNotFound:
        return Check(
            "sandbox",
            f"Docker engine at {target} answers, image {settings.sandbox_image} missing",
            "build it with scripts/build_sandbox_image.sh or set WFLO_SANDBOX_IMAGE",
        )
    finally:
        client.close()
    return Check("sandbox", f"Docker engine at {target} answers, image {settings.sandbox_image} present")


def check_llm(settings: WfloSettings) -> Check:
    if settings.llm_mode == "auto":  # live wherever a key is set, recorded answers elsewhere
        live = any(settings.has_credentials(p) for p in ("openai", "anthropic", "openai_compatible"))
        settings = settings.model_copy(update={"llm_mode": "live" if live else "replay"})
    if settings.llm_mode == "replay":
        from wflo_core.llm.providers import Cassette, default_cassette_path

        path = settings.cassette_path or default_cassette_path()
        if not Path(path).is_file():
            return Check(
                "llm",
                f"replay mode, cassette {path} not found",
                "set WFLO_CASSETTE_PATH to a recorded cassette, or record one with WFLO_LLM_MODE=record",
            )
        try:
            entries = len(Cassette(path))
        except ConfigError as err:
            return Check(
                "llm",
                f"replay mode, cassette {path} unreadable: {first_line(err)}",
                "re-record it with WFLO_LLM_MODE=record",
            )
        return Check("llm", f"replay mode, cassette {path} ({entries} recorded calls); no key needed")
    keys = {"OPENAI_API_KEY": settings.openai_api_key, "ANTHROPIC_API_KEY": settings.anthropic_api_key}
    present = [name for name, key in keys.items() if key is not None and key.get_secret_value()]
    compatible = settings.openai_compatible_base_url
    if not present and not compatible:
        return Check(
            "llm",
            f"{settings.llm_mode} mode, no provider configured (no API key set)",
            "set OPENAI_API_KEY or ANTHROPIC_API_KEY (or WFLO_OPENAI_COMPATIBLE_BASE_URL), "
            "or use WFLO_LLM_MODE=replay",
        )
    configured = [
        *(f"{name} set" for name in present),
        *([f"openai_compatible at {where(compatible)}"] if compatible else []),
    ]
    recording = settings.llm_mode == "record"
    into = f", recording into {settings.cassette_path or settings.recordings_path}" if recording else ""
    return Check("llm", f"{settings.llm_mode} mode: {', '.join(configured)}{into}")


CHECKS: tuple[Callable[[WfloSettings], Check], ...] = (
    check_ledger,
    check_redis,
    check_kafka,
    check_sandbox,
    check_llm,
)


def run_checks(settings: WfloSettings) -> list[Check]:
    """Every check, each scrubbed of the configured secrets (an error text might quote one)."""
    secrets = _secrets(settings)

    def scrub(text: str | None) -> str | None:
        for secret in secrets:
            text = text.replace(secret, "***") if text else text
        return text

    results = []
    for check in CHECKS:
        try:
            result = check(settings)
        except Exception as err:  # a broken check must not hide the others
            result = Check(
                check.__name__.removeprefix("check_"),
                f"check crashed: {first_line(err)}",
                "report this; the other checks are unaffected",
            )
        results.append(Check(result.name, scrub(result.detail) or "", scrub(result.fix)))
    return results
