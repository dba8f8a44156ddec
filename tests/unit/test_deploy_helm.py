"""deploy/helm: the values for Dagster's chart and the Secret they name agree with wflo and the chart.

No cluster here: the checks are the ones that decide whether `helm upgrade` and the pods accept the
files: keys the chart's values.schema.json allows (its K8sRunLauncherConfig and RunK8sConfig
forbid anything else), every Secret/env name wired to one that exists, and every WFLO_* setting a
real WfloSettings field that loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from wflo_core.config import ENV_PREFIX, WfloSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "helm" / "values.yaml"
SECRETS = ROOT / "deploy" / "helm" / "wflo-settings.secret.yaml"
# dagster/dagster chart 1.13.x values.schema.json: $defs K8sRunLauncherConfig and RunK8sConfig
# (additionalProperties: false).
K8S_RUN_LAUNCHER_KEYS = {
    "envConfigMaps", "envSecrets", "envVars", "failPodOnRunFailure", "image", "imagePullPolicy", "jobNamespace",
    "kubeconfigFile", "labels", "loadInclusterConfig", "resources", "runK8sConfig", "schedulerName",
    "securityContext", "volumeMounts", "volumes",
}
RUN_K8S_CONFIG_KEYS = {"containerConfig", "jobMetadata", "jobSpecConfig", "podSpecConfig", "podTemplateSpecMetadata"}
POSTGRESQL_KEYS = {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"}


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict[str, str]]:
    docs = [d for d in yaml.safe_load_all(SECRETS.read_text()) if d]
    assert {d["kind"] for d in docs} == {"Secret"}
    return {d["metadata"]["name"]: d["stringData"] for d in docs}


def settings_env_names() -> set[str]:
    names = set()
    for name, info in WfloSettings.model_fields.items():
        names.add(ENV_PREFIX + name.upper())
        if info.validation_alias is not None:
            names.update(c for c in info.validation_alias.choices if isinstance(c, str))
    return names


def unknown_wflo_settings(env: Iterable[str]) -> set[str]:
    """The ``WFLO_`` names among ``env`` (names, or a mapping of them) that no setting reads."""
    return {k for k in env if k.startswith(ENV_PREFIX)} - settings_env_names()


def wflo_env(values: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """What a run pod gets: the launcher's envSecrets, then its envVars (NAME=value)."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    env = {}
    for ref in launcher["envSecrets"]:
        env.update(secrets[ref["name"]])
    env.update(var.split("=", 1) for var in launcher["envVars"])
    return env


def test_the_check_catches_a_misspelled_setting() -> None:
    assert unknown_wflo_settings({"WFLO_REDIS_URL": "x", "WFLO_REDIS_URI": "x", "PATH": "/bin"}) == {"WFLO_REDIS_URI"}


def test_every_wflo_setting_the_release_sets_exists_and_loads(values: dict, secrets: dict,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    env = wflo_env(values, secrets)
    assert unknown_wflo_settings(env) == set()
    assert {"WFLO_DATABASE_URL", "WFLO_REDIS_URL", "WFLO_KAFKA_BOOTSTRAP_SERVERS"} <= set(env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.database_url.startswith("postgresql")  # the shared ledger, not a pod-local SQLite
    assert settings.redis_url and settings.kafka_bootstrap_servers
    assert settings.effective_sandbox_backend == "process"  # no Docker engine in a pod


def test_code_location_is_wflos_user_code_image_and_module(values: dict) -> None:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"].endswith("/wflo-user-code")
    assert deployment["image"]["tag"] not in ("", "latest")  # a run must get the image its server loaded
    args = deployment["dagsterApiGrpcArgs"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["user-code"]["command"]
    assert args[args.index("--module-name") + 1] == compose[compose.index("-m") + 1] == "wflo_dagster.definitions"
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_settings_and_secrets_come_from_secrets_that_exist(values: dict, secrets: dict) -> None:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    for where in (deployment, values["runLauncher"]["config"]["k8sRunLauncher"], values["dagsterDaemon"]):
        assert [ref["name"] for ref in where["envSecrets"]] == ["wflo-settings"]
    assert "wflo-settings" in secrets
    assert set(secrets[values["global"]["postgresqlSecretName"]]) == {"postgresql-password"}
    assert values["generatePostgresqlPasswordSecret"] is False
    # secrets are only in the Secret, never in the values
    assert not [v for v in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"] if "KEY" in v]


def test_runs_are_k8s_jobs_with_resource_limits_and_chart_schema_keys(values: dict) -> None:
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= K8S_RUN_LAUNCHER_KEYS
    assert set(launcher["runK8sConfig"]) <= RUN_K8S_CONFIG_KEYS
    assert set(values["postgresql"]) <= POSTGRESQL_KEYS and values["postgresql"]["enabled"] is False
    limits = launcher["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    assert launcher["runK8sConfig"]["jobSpecConfig"]["backoffLimit"] == 0


def test_queue_and_monitoring_match_the_single_host_instance(values: dict) -> None:
    instance = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["maxResumeRunAttempts"] == instance["run_monitoring"]["max_resume_run_attempts"] == 0
    assert values["dagsterDaemon"]["runRetries"]["enabled"] is instance["run_retries"]["enabled"] is False
