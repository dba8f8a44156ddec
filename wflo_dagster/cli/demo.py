"""``wflo demo``: run the research agent on the embedded default and print what it cost."""

from __future__ import annotations

import typer

DEMO_JOB = "research_agent_job"


def demo(
    job: str = typer.Option(DEMO_JOB, help="Job of wflo_dagster.definitions to run."),
    partition: str | None = typer.Option(None, help="Partition of a partitioned job (default: the latest)."),
) -> None:
    """Materialize an example agent pipeline offline (replay cassette) and print its cost report."""
    import gc

    # Loading Dagster, SQLAlchemy and wflo allocates about a million objects that live as long as the
    # process, and every full collection on the way scans them all again (a second of the demo, for
    # no garbage): collect nothing while they load, then freeze them out of every later collection.
    gc.disable()
    try:
        import os

        from rich.console import Console

        from wflo_core.config import load_settings, redact_url
        from wflo_core.errors import ConfigError
        from wflo_core.ledger import open_ledger
        from wflo_core.ledger.rollups import cost_rollup, run_total
        from wflo_core.services import shared_services
        from wflo_dagster.cli.costs import rollup_table

        os.environ.setdefault("WFLO_LLM_MODE", "replay")  # offline even where a provider key is set
        settings = load_settings()
        dagster_home = settings.home.resolve() / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").touch()  # an embedded instance: SQLite storage in this folder
        os.environ.setdefault("DAGSTER_HOME", str(dagster_home))
        open_ledger(settings).close()  # migrated before the steps open it

        import dagster as dg

        from wflo_dagster.definitions import defs
        from wflo_dagster.sensors.run_status import close_out_run

        try:
            job_def = defs.resolve_job_def(job)
        except Exception:
            raise ConfigError(f"no job named {job!r} in wflo_dagster.definitions; try {DEMO_JOB}") from None
        if partition is None and job_def.partitions_def is not None:
            partition = job_def.partitions_def.get_last_partition_key()
        console = Console(width=max(110, Console().width))
        instance = dg.DagsterInstance.get()
    finally:
        gc.freeze()
        gc.enable()
    with console.status(f"running {job} ..."):
        result = job_def.execute_in_process(
            instance=instance, raise_on_error=False, partition_key=partition,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    status = "succeeded" if result.success else "failed"
    reason = None
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        reason = failure.event_specific_data.error.message.strip() if failure else "run failed"
    with shared_services(settings) as services:
        close_out_run(instance, services, result.run_id, job, status, reason)
        services.relay_events()  # the run's last events, to Kafka or the JSONL file
        with services.ledger.transaction() as session:
            by_step = cost_rollup(session, "step", run_id=result.run_id)
            by_model = cost_rollup(session, "model", run_id=result.run_id)
            total = run_total(session, result.run_id)
    console.print(f"run [bold]{result.run_id}[/] of [bold]{job}[/] {status}"
                  + (f": {reason}" if reason else ""))
    console.print(rollup_table(by_step, "step", "LLM cost by step"))
    console.print(rollup_table(by_model, "model", "LLM cost by model"))
    console.print(f"total LLM cost of the run: [bold]${total}[/] "
                  f"(exact; ledger {redact_url(settings.ledger_url)})")
    console.print(f"see it in the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} "
                  "dagster dev -m wflo_dagster.definitions")
    if not result.success:
        raise typer.Exit(1)
