"""``wflo runs``: undo a run's side effects, or resume a failed run from where it failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import dagster as dg

app = typer.Typer(help="Roll back or resume runs.", no_args_is_help=True)


@app.command("rollback")
def rollback(
    run_id: str = typer.Argument(..., help="Any run of the logical run (its continuations are included)."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Run compensations that failed before again."
    ),
) -> None:
    """Run the run's compensations newest first, each once; safe to re-invoke after an interruption."""
    from wflo_core.compensation import CompensationBook
    from wflo_core.config import load_settings
    from wflo_core.ledger import open_ledger

    with open_ledger(load_settings()) as ledger:
        report = CompensationBook(ledger).rollback(run_id, retry_failed=retry_failed)
    for o in report.outcomes:
        note = " (resumed after an interrupted rollback)" if o.resumed else ""
        typer.echo(
            f"{o.status:>14}  #{o.seq} {o.action} of {o.step_key} in run {o.run_id}{note}"
            + (f": {o.error}" if o.error else "")
        )
    if not report.outcomes:
        typer.echo(f"run {run_id} registered no compensations")
    if not report.ok:
        typer.secho(
            f"{len(report.failed)} compensation(s) failed; fix and re-run with --retry-failed",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)


def job_of(module: str, attribute: str, job_name: str) -> dg.JobDefinition:
    """Dagster's reconstructor for :func:`resume`: the job ``job_name`` of ``module.attribute``."""
    import importlib

    return getattr(importlib.import_module(module), attribute).resolve_job_def(job_name)


@app.command("resume")
def resume(
    run_id: str = typer.Argument(..., help="A failed Dagster run id."),
    module: str = typer.Option("wflo_dagster.definitions", help="Module holding the Definitions object."),
    attribute: str = typer.Option("defs", help="Name of the Definitions object in --module."),
) -> None:
    """Re-execute a failed run from its failed steps (in this process); finished steps are not re-run
    and LLM answers already paid for are reused."""
    import os

    import dagster as dg

    from wflo_core.errors import ConfigError

    if "DAGSTER_HOME" not in os.environ:
        raise ConfigError("set DAGSTER_HOME to the Dagster instance that ran the run")
    instance = dg.DagsterInstance.get()
    failed = instance.get_run_by_id(run_id)
    if failed is None:
        raise ConfigError(
            f"no Dagster run {run_id!r} in the instance at DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
        )
    if failed.status != dg.DagsterRunStatus.FAILURE:
        raise ConfigError(f"run {run_id} is {failed.status.value}; only a failed run can be resumed")
    job = dg.build_reconstructable_job(
        __name__, job_of.__name__, reconstructable_args=(module, attribute, failed.job_name),
        reconstructor_working_directory=os.getcwd(),
    )
    result = dg.execute_job(
        job, instance, reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        tags={k: v for k, v in failed.tags.items() if not k.startswith("dagster/")},  # budget and attribution
    )
    typer.echo(f"run {result.run_id} resumed {run_id}: {'succeeded' if result.success else 'failed'}")
    if not result.success:
        raise typer.Exit(1)
