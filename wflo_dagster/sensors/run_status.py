"""Run-status sensors: close out wflo's run record whatever way a Dagster run ends.

Step hooks never fire for crashed or killed step processes or terminated runs; these sensors are
the backstop that marks such steps crashed, releases their budget holds and emits the run event.
"""

from __future__ import annotations

import dagster as dg

from wflo_core.budgets import BudgetBook
from wflo_core.config import load_settings
from wflo_core.ledger.store import Ledger
from wflo_core.runs import close_run
from wflo_dagster.run_summary import tag_run_with_cost

_STATUS = {
    dg.DagsterRunStatus.SUCCESS: "succeeded",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELED: "canceled",
}


def _failure_reason(context: dg.RunStatusSensorContext) -> str | None:
    if context.dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return None
    failures = [e for e in context.instance.all_logs(context.dagster_run.run_id,
                                                     of_type=dg.DagsterEventType.RUN_FAILURE)]
    if failures and failures[-1].dagster_event and failures[-1].dagster_event.message:
        return failures[-1].dagster_event.message
    return "run failed"


def close_out_run(instance: dg.DagsterInstance, ledger: Ledger, run_id: str, workflow: str, status: str,
                  reason: str | None) -> None:
    """Close the wflo run record and put the run's exact cost on the Dagster run as tags."""
    close_run(ledger, BudgetBook(ledger), run_id, workflow, status, reason)
    with ledger.transaction() as session:
        tag_run_with_cost(instance, session, run_id)


def close_out(context: dg.RunStatusSensorContext) -> None:
    run = context.dagster_run
    ledger = Ledger(load_settings().ledger_url)
    try:
        close_out_run(context.instance, ledger, run.run_id, run.job_name, _STATUS[run.status],
                      _failure_reason(context))
    finally:
        ledger.close()


def _make(status: dg.DagsterRunStatus) -> dg.SensorDefinition:
    @dg.run_status_sensor(name=f"wflo_close_out_{_STATUS[status]}_runs", run_status=status,
                          monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Closes the wflo ledger's run record (backstop for crashed steps).")
    def _sensor(context: dg.RunStatusSensorContext) -> None:
        close_out(context)

    return _sensor


run_close_out_sensors = [_make(status) for status in _STATUS]
