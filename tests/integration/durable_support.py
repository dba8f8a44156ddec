"""Shared by the durable-workflow tests: a Dagster instance and a wflo ledger, both on real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from sqlalchemy import select
from typer.testing import CliRunner

from tests.services import scratch_database
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import LLMCall, Run, Step
from wflo_core.ledger.store import Ledger

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@contextmanager
def durable_env(
    dagster_url: str, postgres_url: str, monkeypatch: Any
) -> Iterator[tuple[dg.DagsterInstance, Ledger]]:
    # Dagster's run storage has a ``runs`` table too, so the ledger gets a database of its own.
    with scratch_database(postgres_url) as ledger_url:
        monkeypatch.setenv("WFLO_DATABASE_URL", ledger_url)
        upgrade(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
        ledger = Ledger(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
        # dagster-postgres is written for psycopg2 (SQLAlchemy 2.1 maps postgresql:// to psycopg 3)
        dagster_pg = dagster_url.replace("postgresql://", "postgresql+psycopg2://")
        overrides = {"storage": {"postgres": {"postgres_url": dagster_pg}}}
        with dg.instance_for_test(overrides=overrides) as instance:
            try:
                yield instance, ledger
            finally:
                ledger.close()


def cli(*args: str) -> str:
    from wflo_dagster.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def evaluate_sensor(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, defs: dg.Definitions
) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def launch(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """Run a sensor's request on the instance exactly as asked: its job, asset selection and tags."""
    return defs.get_job_def(request.job_name).execute_in_process(
        instance=instance,
        asset_selection=list(request.asset_selection or []),
        tags=request.tags,
        raise_on_error=False,
    )


def active_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(statuses=ACTIVE)))


def ledger_run(ledger: Ledger, run_id: str) -> Run:
    with ledger.transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.expunge(run)
        return run


def steps_of(ledger: Ledger, run_id: str) -> dict[str, str]:
    with ledger.transaction() as session:
        return {s.step_key: s.status for s in session.scalars(select(Step).where(Step.run_id == run_id))}


def paid_calls(ledger: Ledger) -> list[tuple[str, str]]:
    """(run id, step key) of every call a provider answered and billed."""
    with ledger.transaction() as session:
        return [
            (c.run_id, c.step_key or "")
            for c in session.scalars(select(LLMCall).where(LLMCall.status == "settled").order_by(LLMCall.id))
        ]
