"""wflo for Dagster: every LLM call of an asset or op priced, budgeted, cached, retried and recorded.

    import dagster as dg
    from wflo_dagster import LLMResource, llm_asset

    @llm_asset(budget_usd="0.20")
    def triage(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
        return llm.complete(context, prompt="Triage this ticket: ...", max_tokens=200).text
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wflo_core.lazy import lazy_exports

_EXPORTS = {
    "LLMResource": "wflo_dagster.resources.llm",
    "SandboxResource": "wflo_dagster.resources.sandbox",
    "EventSinkResource": "wflo_dagster.resources.events",
    "WfloResource": "wflo_dagster.resources.wflo",
    "llm_asset": "wflo_dagster.decorators",
    "llm_op": "wflo_dagster.decorators",
    "track_llm_step": "wflo_dagster.decorators",
    "run_code_step": "wflo_dagster.sandbox_step",
    "approval_gate": "wflo_dagster.gates",
    "checkpoint": "wflo_dagster.checkpoints",
    "resume": "wflo_dagster.checkpoints",
    "register_compensation": "wflo_dagster.compensation",
    "cost_check": "wflo_dagster.checks",
    "cost_checks": "wflo_dagster.checks",
    "WFLO_HOOKS": "wflo_dagster.hooks",
    "approvals_sensor": "wflo_dagster.sensors.approvals",
    "kafka_trigger_sensor": "wflo_dagster.sensors.kafka_trigger",
    "outbox_relay_sensor": "wflo_dagster.sensors.outbox_relay",
    "rollback_failed_runs": "wflo_dagster.sensors.rollback",
    "run_close_out_sensors": "wflo_dagster.sensors.run_status",
    "as_failure": "wflo_dagster.failures",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from wflo_dagster.checkpoints import checkpoint as checkpoint
    from wflo_dagster.checkpoints import resume as resume
    from wflo_dagster.checks import cost_check as cost_check
    from wflo_dagster.checks import cost_checks as cost_checks
    from wflo_dagster.compensation import register_compensation as register_compensation
    from wflo_dagster.decorators import llm_asset as llm_asset
    from wflo_dagster.decorators import llm_op as llm_op
    from wflo_dagster.decorators import track_llm_step as track_llm_step
    from wflo_dagster.failures import as_failure as as_failure
    from wflo_dagster.gates import approval_gate as approval_gate
    from wflo_dagster.hooks import WFLO_HOOKS as WFLO_HOOKS
    from wflo_dagster.resources.events import EventSinkResource as EventSinkResource
    from wflo_dagster.resources.llm import LLMResource as LLMResource
    from wflo_dagster.resources.sandbox import SandboxResource as SandboxResource
    from wflo_dagster.resources.wflo import WfloResource as WfloResource
    from wflo_dagster.sandbox_step import run_code_step as run_code_step
    from wflo_dagster.sensors.approvals import approvals_sensor as approvals_sensor
    from wflo_dagster.sensors.kafka_trigger import kafka_trigger_sensor as kafka_trigger_sensor
    from wflo_dagster.sensors.outbox_relay import outbox_relay_sensor as outbox_relay_sensor
    from wflo_dagster.sensors.rollback import rollback_failed_runs as rollback_failed_runs
    from wflo_dagster.sensors.run_status import run_close_out_sensors as run_close_out_sensors
