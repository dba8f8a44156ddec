"""Approval gates for Dagster: the run stops cleanly at the gate; a sensor launches the continuation.

Nothing waits inside Dagster. A gate step that has no decision yet opens the request, tags the run
``wflo/waiting_approval`` and yields no output: the steps after it are *skipped* and the run ends
successfully, holding no worker and no run slot. The :func:`approvals_sensor` applies timeout
policies and, once a request is approved (by ``wflo approvals approve``, the API, a timeout policy),
launches one run of what the stopped run did not materialize, tagged ``wflo/parent_run_id`` and
``wflo/approval_id``. In that run the gate finds the approval along the run chain and passes.
A budget breach with ``on_breach="ask"`` stops its step the same way (``AwaitingApproval``) and is
continued by the same sensor, with the run's limit raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from wflo_core.approvals import (
    APPROVAL_TAG,
    WAITING_TAG,
    ApprovalBook,
    ApprovalRequest,
    ApprovalView,
    AutoApproveRule,
    TimeoutPolicy,
    continuation_tags,
)
from wflo_core.config import load_settings
from wflo_core.ledger.store import Ledger
from wflo_dagster.hooks import LLM_RESOURCE_KEY, WFLO_HOOKS
from wflo_dagster.resources.llm import LLMResource, step_identity

APPROVAL_STATUS_TAG = "wflo/approval_status"
"""Set on a stopped Dagster run when its request expires, so the UI shows why nothing continued."""


def approval_gate(
    name: str,
    *,
    reason: str,
    upstream: Sequence[str | dg.AssetKey | dg.AssetsDefinition] = (),
    review_context: Callable[..., Mapping[str, Any]] | None = None,
    approvers: Sequence[str] = (),
    timeout: timedelta | None = None,
    on_timeout: TimeoutPolicy = "reject",
    escalate_to: Sequence[str] = (),
    escalation_timeout: timedelta | None = None,
    auto_approve: Sequence[AutoApproveRule] = (),
    **asset_kwargs: Any,
) -> dg.AssetsDefinition:
    """An asset that passes only once a human (or a rule) approved it.

    ``review_context(**upstream_values)`` builds what the reviewer sees (e.g. the code about to run,
    ``projected_cost_usd`` for :class:`~wflo_core.approvals.ProjectedCostBelow`). The gate's value is
    the decision (id, who, when, why); later assets depend on it to run only after approval.
    """
    ins = {_input_name(u): dg.AssetIn(key=_asset_key(u)) for u in upstream}

    def gate(context: AssetExecutionContext, **upstream_values: Any) -> Any:
        llm: LLMResource = getattr(context.resources, LLM_RESOURCE_KEY)
        llm.start_step(context)
        run_id, step_key, _ = step_identity(context)
        request = ApprovalRequest(
            reason=reason,
            context=review_context(**upstream_values) if review_context else {},
            approvers=tuple(approvers),
            timeout=timeout,
            on_timeout=on_timeout,
            escalate_to=tuple(escalate_to),
            escalation_timeout=escalation_timeout,
        )
        view = ApprovalBook(llm.services.ledger).gate(
            run_id=run_id, workflow=context.job_name, step_key=step_key, request=request, rules=auto_approve
        )
        if view.status == "approved":
            yield dg.Output(
                _decision(view),
                metadata={"wflo/approval_id": view.id, "wflo/decided_by": view.decided_by or ""},
            )
        elif view.is_open:
            context.instance.add_run_tags(run_id, {WAITING_TAG: view.id})
            context.log.info(
                f"stopping at {step_key}: approval {view.id} requested ({reason}). The run ends here; "
                f"approve with `wflo approvals approve {view.id} --by NAME --reason WHY` and a "
                "continuation run starts"
            )
        else:
            context.log.warning(
                f"approval {view.id} was {view.status} by {view.decided_by}: "
                f"{view.decision_reason}; the steps after {step_key} do not run"
            )

    # Dagster checks the context annotation as a type; this module's annotations are strings.
    gate.__annotations__ = {"context": AssetExecutionContext, "upstream_values": Any, "return": Any}
    return dg.asset(
        name=name,
        ins=ins,
        output_required=False,
        hooks=set(WFLO_HOOKS),
        required_resource_keys={LLM_RESOURCE_KEY},
        **asset_kwargs,
    )(gate)


def _asset_key(ref: str | dg.AssetKey | dg.AssetsDefinition) -> dg.AssetKey:
    if isinstance(ref, dg.AssetsDefinition):
        return ref.key
    return ref if isinstance(ref, dg.AssetKey) else dg.AssetKey.from_user_string(ref)


def _input_name(ref: str | dg.AssetKey | dg.AssetsDefinition) -> str:
    return _asset_key(ref).path[-1]


def _decision(view: ApprovalView) -> dict[str, Any]:
    return {
        "approval_id": view.id,
        "decided_by": view.decided_by,
        "reason": view.decision_reason,
        "decided_at": view.decided_at.isoformat() if view.decided_at else None,
    }


# ---------------------------------------------------------------------------------------------- sensor


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


def continuation_requests(context: dg.SensorEvaluationContext, ledger: Ledger) -> list[dg.RunRequest]:
    """Apply timeout policies, then one run request per approved request whose run has ended."""
    book = ApprovalBook(ledger)
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
        with ledger.transaction() as session:
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
        ledger = Ledger(load_settings().ledger_url)
        try:
            requests = continuation_requests(context, ledger)
        finally:
            ledger.close()
        return dg.SensorResult(
            run_requests=requests, skip_reason=None if requests else "no approved run waiting to continue"
        )

    return _sensor
