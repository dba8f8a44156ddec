"""The compose stack is valid and its services' environments match what the code reads.

``docker-compose config`` (Debian's docker-compose, no daemon needed) renders the file with
.env.example; the test then cross-checks it against dagster.yaml's ``{env: ...}`` references and
run-launcher ``env_vars``, wflo's settings (``WfloSettings``, prefix ``WFLO_``) and the workspace.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests import services
from tests.unit.test_deploy_helm import unknown_wflo_settings
from wflo_core.config import ENV_PREFIX, load_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAGSTER_PROCESSES = ("migrate", "user-code", "webserver", "daemon")
WFLO_PROCESSES = ("migrate", "user-code", "daemon")


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    services.ensure_command("docker-compose", "docker-compose")
    return subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
                          capture_output=True, text=True, cwd=ROOT, env=env or {"PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def stack() -> dict:
    proc = compose_config("--env-file", str(ROOT / ".env.example"))
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def instance_yaml() -> dict:
    return yaml.safe_load((ROOT / "dagster.yaml").read_text())


def env_refs(node) -> set[str]:
    """Every ``{env: NAME}`` in a parsed dagster.yaml."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node))
    return set()


def service_env(stack: dict, name: str) -> dict[str, str]:
    environment = stack["services"][name].get("environment") or {}
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def test_compose_file_validates_and_requires_a_postgres_password() -> None:
    proc = compose_config()
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert used - documented == set()
    assert documented - used == set()


def test_dagster_processes_get_every_variable_dagster_yaml_reads(stack: dict, instance_yaml: dict) -> None:
    refs = env_refs(instance_yaml)
    assert {"DAGSTER_POSTGRES_HOST", "DAGSTER_CURRENT_IMAGE", "DAGSTER_DOCKER_NETWORK"} <= refs
    for name in DAGSTER_PROCESSES:
        assert refs - set(service_env(stack, name)) == set(), name


def test_daemon_holds_every_variable_the_run_launcher_forwards(stack: dict, instance_yaml: dict) -> None:
    forwarded = instance_yaml["run_launcher"]["config"]["env_vars"]
    bare = {v for v in forwarded if "=" not in v}
    assert bare - set(service_env(stack, "daemon")) == set()
    # ...and the WFLO_ ones are settings wflo actually reads, as are all WFLO_ vars in the stack
    assert unknown_wflo_settings(bare) == set()
    for name in stack["services"]:
        assert unknown_wflo_settings(service_env(stack, name)) == set(), name
    # the instance's own variables are forwarded too: run containers load the same instance
    assert env_refs(instance_yaml) - {"DAGSTER_CURRENT_IMAGE", "DAGSTER_DOCKER_NETWORK"} <= bare


def test_wflo_settings_load_from_the_stack_and_point_at_its_services(
        stack: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    postgres = service_env(stack, "postgres")
    for name in WFLO_PROCESSES:
        with monkeypatch.context() as mp:
            for key, value in service_env(stack, name).items():
                if key.startswith(ENV_PREFIX):
                    mp.setenv(key, value)
            settings = load_settings()
        db = urlsplit(settings.database_url)
        assert (db.hostname, db.port) == ("postgres", 5432), name
        assert db.path.lstrip("/") == postgres["LEDGER_POSTGRES_DB"], name
        assert (db.username, db.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]), name
        assert urlsplit(settings.redis_url).hostname == "redis" and "redis" in stack["services"]
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.effective_sandbox_backend == "docker"
        assert settings.openai_api_key is None  # .env.example leaves the key empty = not configured


def test_dagster_storage_and_run_launcher_match_the_stack(stack: dict, instance_yaml: dict) -> None:
    postgres, daemon, user_code = (service_env(stack, n) for n in ("postgres", "daemon", "user-code"))
    assert daemon["DAGSTER_POSTGRES_HOST"] == "postgres"
    assert daemon["DAGSTER_POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert daemon["DAGSTER_POSTGRES_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert daemon["DAGSTER_POSTGRES_DB"] == postgres["POSTGRES_DB"] != postgres["LEDGER_POSTGRES_DB"]
    # runs start in the code server's own image, on the stack's network, with the shared storage volume
    assert user_code["DAGSTER_CURRENT_IMAGE"] == stack["services"]["user-code"]["image"]
    assert {stack["services"][n]["image"] for n in DAGSTER_PROCESSES} == {user_code["DAGSTER_CURRENT_IMAGE"]}
    assert daemon["DAGSTER_DOCKER_NETWORK"] in {net["name"] for net in stack["networks"].values()}
    launcher_volumes = instance_yaml["run_launcher"]["config"]["container_kwargs"]["volumes"]
    storage_volume = stack["volumes"]["dagster_storage"]["name"]
    assert f"{storage_volume}:{daemon['DAGSTER_STORAGE_DIR']}" in launcher_volumes
    assert daemon["DAGSTER_COMPUTE_LOGS_DIR"].startswith(daemon["DAGSTER_STORAGE_DIR"] + "/")
    for name in ("webserver", "daemon"):
        mounts = {tuple(m.split(":")[:2]) for m in stack["services"][name]["volumes"]}  # "src:dst:mode"
        assert ("dagster_storage", daemon["DAGSTER_STORAGE_DIR"]) in mounts, name
        assert ("/var/run/docker.sock", "/var/run/docker.sock") in mounts, name  # DOCKER_SOCKET's default
    # compose gives run containers their mounts through the code location's container context (it
    # replaces dagster.yaml's list, so DOCKER_SOCKET can move the socket): with the default, the same list
    context = json.loads(user_code["DAGSTER_CONTAINER_CONTEXT"])["docker"]["container_kwargs"]["volumes"]
    assert context == launcher_volumes


def test_workspace_points_at_the_user_code_server(stack: dict) -> None:
    [entry] = yaml.safe_load((ROOT / "docker" / "workspace.compose.yaml").read_text())["load_from"]
    server = entry["grpc_server"]
    command = stack["services"]["user-code"]["command"]
    assert server["host"] == "user-code"
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("--location-name") + 1] == server["location_name"]
    [local] = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert local["python_module"]["module_name"] == command[command.index("-m") + 1]


def test_cold_start_order_and_exposure(stack: dict) -> None:
    svc = stack["services"]
    for name, spec in svc.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in svc[dep], f"{name} waits for {dep} to be healthy: it has no check"
    assert svc["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("user-code", "webserver", "daemon"):
        assert svc[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert {"redis", "kafka"} <= set(svc["daemon"]["depends_on"])
    assert svc["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    [port] = svc["webserver"]["ports"]
    assert port.startswith("127.0.0.1:"), port  # "host_ip:published:target/proto"
    assert all("ports" not in spec for name, spec in svc.items() if name != "webserver")
