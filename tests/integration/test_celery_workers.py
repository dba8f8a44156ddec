"""The steps of one run spread over Celery workers (dagster-celery, Redis broker), wflo's money intact.

Three ``dagster-celery worker start`` processes, each with its own DAGSTER_HOME and WFLO_HOME and
nothing shared but the network services (Postgres for Dagster and the ledger, Redis for the broker,
results and wflo's cache, the LLM server), the way separate hosts would run them. The run worker is
``dagster job execute`` on the shipped triage agent with ``celery_executor`` (jobs/celery_triage.py);
``dagster-daemon`` runs wflo's code location for the run-status close-out sensors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy import select

from tests import services
from wflo_core.calls import LLMRequest
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import Budget, BudgetHold, LLMCall, Run, Step
from wflo_core.ledger.store import Ledger
from wflo_core.llm.gateway import prompt_token_upper_bound
from wflo_core.pricing.catalog import PriceCatalog
from wflo_dagster.pipelines.triage_agent import SAMPLE_INBOX, TRIAGE_MODEL, triage_messages

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WORKERS = ("w1", "w2", "w3")
JOB_MODULE = "tests.integration.jobs.celery_triage"
TICKET_STEP = "ticket_triage.triage_ticket"
CLOSE_OUT_SENSORS = 3
T = TypeVar("T")


@dataclass
class Cluster:
    home: Path
    env: dict[str, str]
    celery_config: Path
    ledger_url: str
    dagster_db_url: str
    instance: DagsterInstance
    llm: object
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log\n{(self.home / f'{name}.log').read_text(errors='replace')[-1500:]}"
                         for name in [*self.workers, *self.procs])

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "ab")
        return subprocess.Popen(args, env=env or self.env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def ledger(self) -> Ledger:
        return Ledger(self.ledger_url)


def eventually(what: str, probe: Callable[[], T | None], timeout: float, cluster: Cluster) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := probe():
                return value
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{cluster.logs()}", pytrace=False)


def celery_app(config: Path):
    from dagster_celery.cli import get_app

    return get_app(str(config))


@pytest.fixture(scope="module")
def cluster(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from tests import llm_server

    home = tmp_path_factory.mktemp("celery-cluster")
    broker = redis_url.rpartition("/")[0]
    llm = llm_server.start_subprocess()
    with services.scratch_database(postgres_url, "dagster") as dagster_db, \
            services.scratch_database(postgres_url, "ledger") as ledger_db:
        ledger_url = ledger_db.replace("postgresql://", "postgresql+psycopg://", 1)
        upgrade(ledger_url)
        instance_yaml = {
            "storage": {"postgres": {"postgres_url": dagster_db.replace("postgresql://", "postgresql+psycopg2://", 1)}},
            "local_artifact_storage": {"module": "dagster.core.storage.root", "class": "LocalArtifactStorage",
                                       "config": {"base_dir": str(home / "storage")}},
            "telemetry": {"enabled": False},
        }
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
        (home / "workspace.yaml").write_text(yaml.safe_dump(
            {"load_from": [{"python_module": {"module_name": "wflo_dagster.definitions", "location_name": "wflo"}}]}))
        celery_config = home / "celery.yaml"
        celery_config.write_text(yaml.safe_dump({"execution": {"config": {
            "broker": f"{broker}/1", "backend": f"{broker}/2"}}}))
        env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(home), "WFLO_HOME": str(home / "wflo"),
            "WFLO_DATABASE_URL": ledger_url, "WFLO_REDIS_URL": redis_url, "WFLO_LLM_MODE": "live",
            "WFLO_OPENAI_API_KEY": "sk-test", "WFLO_OPENAI_BASE_URL": llm.openai_base_url,
        }
        cluster = Cluster(home, env, celery_config, ledger_url, dagster_db,
                          DagsterInstance.from_ref(_instance_ref(home)), llm)
        try:
            for name in WORKERS:  # a host each: own DAGSTER_HOME (same instance config) and WFLO_HOME
                worker_home = home / name
                worker_home.mkdir()
                (worker_home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
                worker_env = {**env, "DAGSTER_HOME": str(worker_home), "WFLO_HOME": str(worker_home / "wflo"),
                              "HOME": str(worker_home)}
                cluster.workers[name] = cluster.start(name, [
                    "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", str(celery_config),
                    "-n", name, "--", "--pool=solo"], worker_env)
            cluster.procs["daemon"] = cluster.start("daemon", ["dagster-daemon", "run", "-w",
                                                                str(home / "workspace.yaml")])
            app = celery_app(celery_config)
            eventually("all three Celery workers answer a ping",
                       lambda: {next(iter(r)).split("@")[0] for r in app.control.ping(timeout=2)} == set(WORKERS),
                       240, cluster)
            engine = sa.create_engine(dagster_db.replace("postgresql://", "postgresql+psycopg://", 1))
            try:  # every sensor of the code location has ticked once: the close-out ones now watch runs
                def sensors_ticked() -> bool:
                    with engine.connect() as conn:
                        return conn.execute(sa.text("SELECT count(DISTINCT selector_id) FROM job_ticks")).scalar() >= 6

                eventually("the daemon's sensors ticked", sensors_ticked, 300, cluster)
            finally:
                engine.dispose()
            yield cluster
        finally:
            for proc in [*cluster.workers.values(), *cluster.procs.values()]:
                services.stop_process(proc, timeout=20, group=True)
            cluster.instance.dispose()
            llm.stop()


def _instance_ref(home: Path):
    from dagster._core.instance.ref import InstanceRef

    return InstanceRef.from_dir(str(home))


def ticket_hold() -> Decimal:
    """The largest amount one ticket's call reserves: the gateway's own upper bound for it."""
    catalog = PriceCatalog()  # the shipped price table, as the workers' gateways use it
    provider, model = TRIAGE_MODEL
    return max(catalog.upper_bound(provider, model, prompt_token_upper_bound(
        LLMRequest(provider, model, tuple(triage_messages(t)), max_tokens=120, temperature=0.0)), 120)
        for t in SAMPLE_INBOX)


def launch(cluster: Cluster, tags: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`dagster job execute` as the run worker; returns the process and the run's id."""
    marker = uuid.uuid4().hex
    tags = {"dagster/partition": datetime.now(UTC).date().isoformat(), "wflo-test/run": marker, **tags}
    proc = cluster.start(f"run-{marker[:8]}", ["dagster", "job", "execute", "-m", JOB_MODULE, "-j", "celery_triage_job",
                                                "-c", str(cluster.celery_config), "--tags", json.dumps(tags)])
    cluster.procs[f"run-{marker[:8]}"] = proc
    run = eventually("the run was created", lambda: next(iter(cluster.instance.get_runs(
        RunsFilter(tags={"wflo-test/run": marker}))), None), 180, cluster)
    return proc, run.run_id


def step_workers(cluster: Cluster, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker (name@host) that executed it, from the run's engine events."""
    found = {}
    for record in cluster.instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        metadata = record.dagster_event.engine_event_data.metadata or {}
        if "Celery worker" in metadata:
            found[record.step_key] = metadata["Celery worker"].value
    return found


@dataclass
class LedgerState:
    budget: Budget | None
    holds: list[BudgetHold]
    calls: list[LLMCall]
    steps: list[Step]
    run: Run | None


def ledger_state(cluster: Cluster, run_id: str) -> LedgerState:
    ledger = cluster.ledger()
    try:
        with ledger.transaction() as session:
            state = LedgerState(
                session.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == run_id)),
                list(session.scalars(select(BudgetHold).where(BudgetHold.run_id == run_id))),
                list(session.scalars(select(LLMCall).where(LLMCall.run_id == run_id))),
                list(session.scalars(select(Step).where(Step.run_id == run_id))),
                session.get(Run, run_id))
            session.expunge_all()
            return state
    finally:
        ledger.close()


def steps_ended(cluster: Cluster, run_id: str) -> set[str]:
    return {r.step_key for r in cluster.instance.all_logs(
        run_id, of_type={DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE})}


def fresh_start(cluster: Cluster) -> None:
    """No remembered answers from an earlier run (the tickets repeat): every call goes to the server."""
    import redis

    client = redis.Redis.from_url(cluster.env["WFLO_REDIS_URL"])
    try:
        for key in client.scan_iter("wflo:cache:*"):
            client.delete(key)
    finally:
        client.close()
    cluster.llm.reset()


def test_fan_out_spreads_over_workers_and_one_budget_holds_across_them(cluster: Cluster) -> None:
    fresh_start(cluster)
    cluster.llm.set_behavior(delay=1.5)  # every call in flight long enough for the workers to overlap
    hold = ticket_hold()
    limit = hold * 2 + hold / 2  # two tickets' holds fit at once, a third does not
    proc, run_id = launch(cluster, {"wflo/budget_usd": str(limit)})
    try:
        proc.wait(600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run worker did not finish within 600 s\n{cluster.logs()}", pytrace=False)
    run = cluster.instance.get_run_by_id(run_id)
    failures = cluster.instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert run.status == DagsterRunStatus.FAILURE, cluster.logs()  # the budget refused some tickets
    assert failures and all(f.step_key.startswith(TICKET_STEP) for f in failures)
    assert all("BudgetExceeded: run budget" in f.dagster_event.event_specific_data.error.message for f in failures)

    # the fan-out ran on all three workers: the engine records which worker took each step
    by_step = step_workers(cluster, run_id)
    tickets = {k: w for k, w in by_step.items() if k.startswith(TICKET_STEP)}
    assert len(tickets) == len(SAMPLE_INBOX), by_step
    assert {w.split("@")[0] for w in tickets.values()} == set(WORKERS), tickets

    state = ledger_state(cluster, run_id)
    budget, calls = state.budget, state.calls
    settled = [c for c in calls if c.status == "settled"]
    spent = sum((c.cost_usd for c in settled), Decimal(0))
    assert budget is not None and budget.limit_usd == limit
    assert budget.spent_usd == spent <= limit  # 0 overshoot, nothing lost or doubled
    assert budget.held_usd == 0 and {h.status for h in state.holds} == {"settled"}
    assert 1 <= len(settled) < len(SAMPLE_INBOX)
    # every physical call is exactly one ledger row; a refused ticket never reached the provider
    assert cluster.llm.request_count() == len(calls) == len(settled) == len(state.holds)
    assert len({c.idempotency_key for c in calls}) == len(calls)
    refused = {f.step_key for f in failures}
    assert refused.isdisjoint({c.step_key for c in calls})
    print(f"\ncelery fan-out: {len(settled)} of {len(SAMPLE_INBOX)} tickets billed on workers "
          f"{sorted(set(tickets.values()))}; budget {limit} USD, ledger spent {spent} USD, held {budget.held_usd}, "
          f"overshoot {max(Decimal(0), spent - limit)}; {cluster.llm.request_count()} physical calls, "
          f"{len(calls)} ledger rows")


def test_a_worker_killed_mid_step_leaves_no_hold_once_the_run_is_closed_out(cluster: Cluster) -> None:
    fresh_start(cluster)
    cluster.llm.set_behavior(delay=20, times=len(WORKERS))  # the first call on each worker hangs 20 s
    proc, run_id = launch(cluster, {})

    def mid_call() -> tuple[str, str] | None:
        """A ticket step whose worker is inside its LLM call: the call's ledger row is ``held``."""
        workers = step_workers(cluster, run_id)
        held = sorted(c.step_key for c in ledger_state(cluster, run_id).calls if c.status == "held")
        return next(((k, workers[k]) for k in held if k in workers), None)

    victim_step, victim_worker = eventually("a ticket step inside its LLM call", mid_call, 180, cluster)
    victim = cluster.workers[victim_worker.split("@")[0]]
    os.killpg(victim.pid, signal.SIGKILL)  # the host dies mid-call: no hook, no settle, no release
    victim.wait(10)

    # the live workers finish their steps; the dead worker's call stays held
    def only_the_victim_is_left() -> LedgerState | None:
        state = ledger_state(cluster, run_id)
        started = {k for k in step_workers(cluster, run_id) if k.startswith(TICKET_STEP)}
        if started - steps_ended(cluster, run_id) != {victim_step}:
            return None
        held = [h for h in state.holds if h.status == "held"]
        in_flight = [c.step_key for c in state.calls if c.status == "held"]
        return state if in_flight == [victim_step] and len(held) == 1 and \
            state.budget.held_usd == held[0].amount_usd > 0 else None

    leaked = eventually("the other workers' steps ended", only_the_victim_is_left, 180, cluster)
    # Terminate the run (SIGINT: the Celery executor revokes its outstanding tasks). It cannot end by
    # itself, its step's task died with the worker, so the operator forces it: the run worker process
    # goes, the run is marked CANCELED (what the UI's "force termination" does).
    os.killpg(proc.pid, signal.SIGINT)
    eventually("the run worker revoked its tasks", lambda: any(
        "received termination signal" in (r.message or "")
        for r in cluster.instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)), 60, cluster)
    time.sleep(3)
    if proc.poll() is None:  # usually it waits for the lost task forever; then the operator forces it
        services.stop_process(proc, timeout=20, group=True, sig=signal.SIGKILL)
    run = cluster.instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        cluster.instance.report_run_canceled(run, message="forced termination: a Celery worker died with its step")

    # the daemon's close-out sensor closes the wflo run: the dead step is crashed and its call, whose
    # billing is unknown (the provider may have charged it), is charged at its bound; no hold stays open
    def closed() -> LedgerState | None:
        state = ledger_state(cluster, run_id)
        # canceled when the operator forced it; failed when the run worker gave up on SIGINT by itself
        return state if state.run is not None and state.run.status in ("canceled", "failed") else None

    state = eventually("the close-out sensor closed the wflo run", closed, 180, cluster)
    assert leaked.budget.held_usd > 0
    assert state.budget.held_usd == 0
    assert {h.status for h in state.holds} <= {"settled", "estimated"}
    assert {s.step_key: s.status for s in state.steps}[victim_step] == "crashed"
    [victim_call] = [c for c in state.calls if c.step_key == victim_step]
    assert (victim_call.status, victim_call.cost_usd) == ("estimated", victim_call.bound_usd)
    assert [h.status for h in state.holds if h.call_key == victim_call.idempotency_key] == ["estimated"]
    billed = [c for c in state.calls if c.status in ("settled", "estimated")]
    assert len(billed) == len(state.calls)
    assert state.budget.spent_usd == sum((c.cost_usd for c in billed), Decimal(0)) <= state.budget.limit_usd
    # every physical call, the killed one included, is exactly one ledger row
    time.sleep(2)
    assert cluster.llm.request_count() == len(state.calls) == len(state.holds)
    assert len({c.idempotency_key for c in state.calls}) == len(state.calls)
