"""Run-status sensors: close out wflo's run record whatever way a Dagster run ends.

Step hooks never fire for crashed or killed step processes or terminated runs; these sensors are
the backstop that marks such steps crashed, releases their budget holds and emits the run event.
"""

from __future__ import annotations

import dagster as dg

from wflo_core.config import load_settings
from wflo_core.runs.summary import run_cost_tags
from wflo_core.services import WfloServices, shared_services

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


def close_out_run(instance: dg.DagsterInstance, services: WfloServices, run_id: str, workflow: str, status: str,
                  reason: str | None) -> dict[str, str]:
    """Close the wflo run record and put the run's exact cost on the Dagster run as tags."""
    services.close_run(run_id, workflow, status, reason)
    with services.ledger.transaction() as session:
        tags = run_cost_tags(session, run_id)
    instance.add_run_tags(run_id, tags)
    return tags


def close_out(context: dg.RunStatusSensorContext) -> None:
    run = context.dagster_run
    with shared_services(load_settings()) as services:
        close_out_run(context.instance, services, run.run_id, run.job_name, _STATUS[run.status],
                      _failure_reason(context))


def _make(status: dg.DagsterRunStatus) -> dg.SensorDefinition:
    @dg.run_status_sensor(name=f"wflo_close_out_{_STATUS[status]}_runs", run_status=status,
                          monitor_all_code_locations=True, default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Closes the wflo ledger's run record (backstop for crashed steps).")
    def _sensor(context: dg.RunStatusSensorContext) -> None:
        close_out(context)

    return _sensor


run_close_out_sensors = [_make(status) for status in _STATUS]
