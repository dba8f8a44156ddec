"""Rollback of failed runs that asked for it (run tag ``wflo/rollback=on_failure``)."""

from __future__ import annotations

import dagster as dg

from wflo_core.config import load_settings
from wflo_core.keys import ROLLBACK_TAG
from wflo_core.services import shared_services


@dg.run_failure_sensor(
    name="wflo_rollback_failed_runs",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the compensations of failed runs tagged wflo/rollback=on_failure.",
)
def rollback_failed_runs(context: dg.RunFailureSensorContext) -> None:
    if context.dagster_run.tags.get(ROLLBACK_TAG) != "on_failure":
        return
    with shared_services(load_settings()) as services:
        report = services.compensations.rollback(context.dagster_run.run_id)
    for outcome in report.failed:
        context.log.warning(
            f"compensation {outcome.seq} ({outcome.action}) of run {outcome.run_id} failed: {outcome.error}"
        )
