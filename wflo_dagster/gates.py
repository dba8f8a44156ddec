"""Approval gates for Dagster: the run stops cleanly at the gate; a sensor launches the continuation.

Nothing waits inside Dagster. A gate step that has no decision yet opens the request, tags the run
``wflo/waiting_approval`` and yields no output: the steps after it are *skipped* and the run ends
successfully, holding no worker and no run slot. The approvals sensor (``sensors/approvals.py``)
applies timeout policies and, once a request is approved, launches one run of what the stopped run
did not materialize; in that run the gate finds the approval along the run chain and passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from wflo_core.approvals import (
    ApprovalRequest,
    ApprovalView,
    AutoApproveRule,
    TimeoutPolicy,
)
from wflo_core.keys import APPROVAL_ID_KEY, DECIDED_BY_KEY, WAITING_TAG
from wflo_dagster.hooks import LLM_RESOURCE_KEY, WFLO_HOOKS
from wflo_dagster.resources.llm import LLMResource, step_identity, workflow_name


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
        llm._open_step(context)
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
        view = llm._wflo_services.approvals.gate(
            run_id=run_id, workflow=workflow_name(context), step_key=step_key, request=request, rules=auto_approve
        )
        if view.status == "approved":
            yield dg.Output(
                _decision(view),
                metadata={APPROVAL_ID_KEY: view.id, DECIDED_BY_KEY: view.decided_by or ""},
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
