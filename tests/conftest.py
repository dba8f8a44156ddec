"""Suite-wide fixtures: real services started on demand, a clean environment for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

_SERVICES: dict[str, services.Service] = {}
REPO_ROOT = Path(__file__).resolve().parent.parent


def _service(name: str, start) -> services.Service:
    if name not in _SERVICES:
        try:
            _SERVICES[name] = start()
        except services.ServiceError as err:
            pytest.fail(f"test service {name!r} could not start: {err}", pytrace=False)
    return _SERVICES[name]


def pytest_sessionfinish(session, exitstatus) -> None:
    for svc in reversed(list(_SERVICES.values())):
        svc.stop()
    _SERVICES.clear()


@pytest.fixture(autouse=True)
def clean_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the embedded default: no WFLO_* or provider variables leak in."""
    for key in list(os.environ):
        if key.startswith("WFLO_") and not key.startswith("WFLO_TEST_"):
            monkeypatch.delenv(key)
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WFLO_HOME", str(tmp_path / "wflo-home"))
    # Tests run from tmp_path; child processes (Dagster step workers) must still import tests.*.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def postgres_service() -> services.Service:
    return _service("postgres", services.start_postgres)


@pytest.fixture(scope="session")
def postgres_url(postgres_service: services.Service) -> str:
    return postgres_service.url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new empty database on the shared server, dropped after the test."""
    with services.scratch_database(postgres_url) as url:
        yield url


@pytest.fixture
def postgres_ledger(fresh_postgres_url: str):
    """A migrated ledger on a new empty Postgres database."""
    from wflo_core.config import load_settings
    from wflo_core.ledger.migrations import upgrade
    from wflo_core.ledger.store import Ledger

    url = load_settings(database_url=fresh_postgres_url).ledger_url
    upgrade(url)
    ledger = Ledger(url)
    yield ledger
    ledger.close()


def use_live_ledger(monkeypatch: pytest.MonkeyPatch, database_url: str, llm_server) -> None:
    """Steps and services of this test use ``database_url`` and call the tests' LLM server live."""
    for key, value in {"WFLO_DATABASE_URL": database_url, "WFLO_LLM_MODE": "live", "WFLO_OPENAI_API_KEY": "sk-test",
                       "WFLO_OPENAI_BASE_URL": llm_server.openai_base_url}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service("redis", services.start_redis).url


@pytest.fixture
def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _service("kafka", services.start_kafka).url


@pytest.fixture(scope="session")
def docker_host() -> str:
    return _service("docker", services.start_dockerd).url


@pytest.fixture(scope="session")
def _llm_server_session():
    from tests import llm_server

    server = llm_server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def llm_server(_llm_server_session):
    """The fake OpenAI/Anthropic server (tests/llm_server.py), reset: no faults, zero counts."""
    _llm_server_session.reset()
    return _llm_server_session


@pytest.fixture(scope="session")
def _llm_server_process_session():
    from tests import llm_server

    server = llm_server.start_subprocess()
    yield server
    server.stop()


@pytest.fixture
def llm_server_process(_llm_server_process_session):
    """The same fake server running in its own process, reset."""
    _llm_server_process_session.reset()
    return _llm_server_process_session


@pytest.fixture(scope="session")
def sandbox_image(docker_host: str) -> str:
    """The sandbox image on the test dockerd, built by scripts/build_sandbox_image.sh if missing."""
    import subprocess

    import docker

    tag = "wflo-sandbox:latest"
    client = docker.DockerClient(base_url=docker_host)
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        script = Path(__file__).resolve().parent.parent / "scripts" / "build_sandbox_image.sh"
        proc = subprocess.run([str(script), tag], env={**os.environ, "DOCKER_HOST": docker_host},
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"building the sandbox image failed: {proc.stderr[-800:]}", pytrace=False)
    finally:
        client.close()
    return tag


@pytest.fixture(scope="session")
def bubblewrap() -> str:
    """Path of bwrap (installed with apt if missing) for the process sandbox."""
    try:
        return services.ensure_command("bwrap", "bubblewrap")
    except services.ServiceError as err:
        pytest.fail(f"bubblewrap could not be installed: {err}", pytrace=False)
