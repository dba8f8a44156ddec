"""The approvals sensor: applies timeout policies and continues runs stopped at a gate once approved.

Once a request is approved (by ``wflo approvals approve``, the API, a timeout policy), it launches one
run of what the stopped run did not materialize, tagged ``wflo/parent_run_id`` and ``wflo/approval_id``.
A budget breach with ``on_breach="ask"`` stops its step the same way (``AwaitingApproval``) and is
continued by the same sensor, with the run's limit raised.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from wflo_core.approvals import ApprovalBook, continuation_tags
from wflo_core.config import load_settings
from wflo_core.keys import APPROVAL_STATUS_TAG, APPROVAL_TAG
from wflo_core.services import shared_services


def remaining_assets(
    instance: dg.DagsterInstance, run: dg.DagsterRun, job: dg.JobDefinition
) -> list[dg.AssetKey]:
    """What ``run`` was asked to materialize and did not (the gate and everything after it)."""
    planned = set(run.asset_selection or job.asset_layer.selected_asset_keys)
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    done = {r.event_log_entry.dagster_event.asset_key for r in records if r.event_log_entry.dagster_event}
    return sorted(planned - done, key=lambda k: k.to_user_string())


def continuation_requests(context: dg.SensorEvaluationContext, book: ApprovalBook) -> list[dg.RunRequest]:
    """Apply timeout policies, then one run request per approved request whose run has ended."""
    for view in book.expire_due():
        context.log.info(f"approval {view.id} timed out: {view.status} ({view.decision_reason})")
        if view.status != "approved" and context.instance.get_run_by_id(view.run_id) is not None:
            context.instance.add_run_tags(view.run_id, {APPROVAL_STATUS_TAG: view.status})
    requests = []
    for view in book.awaiting_continuation():
        launched = context.instance.get_runs(dg.RunsFilter(tags={APPROVAL_TAG: view.id}), limit=1)
        if launched:
            book.mark_continued(view.id, launched[0].run_id)
            continue
        parent = context.instance.get_run_by_id(view.run_id)
        if parent is None or not parent.is_finished:
            continue  # launch only once the stopped run has ended, so nothing runs twice
        if context.repository_def is None or not context.repository_def.has_job(parent.job_name):
            context.log.warning(f"approval {view.id}: job {parent.job_name} is not a target of this sensor")
            continue
        job = context.repository_def.get_job(parent.job_name)
        with book.ledger.transaction() as session:
            tags = continuation_tags(session, view, parent.tags)
        requests.append(
            dg.RunRequest(
                run_key=f"wflo-approval/{view.id}",
                job_name=parent.job_name,
                asset_selection=remaining_assets(context.instance, parent, job),
                tags=tags,
            )
        )
    return requests


def approvals_sensor(
    jobs: Sequence[dg.JobDefinition | dg.UnresolvedAssetJobDefinition],
    *,
    name: str = "wflo_approvals",
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """Continues approved runs of ``jobs`` and applies approval timeouts."""

    @dg.sensor(
        name=name,
        jobs=list(jobs),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches the continuation of runs stopped at an approval gate once approved; "
        "applies approval timeout policies.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        with shared_services(load_settings()) as services:
            requests = continuation_requests(context, services.approvals)
        return dg.SensorResult(
            run_requests=requests, skip_reason=None if requests else "no approved run waiting to continue"
        )

    return _sensor
