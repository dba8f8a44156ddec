"""The Dagster code location: example agent pipelines, wflo resources, sensors and schedules."""

from __future__ import annotations

import dagster as dg

from wflo_dagster.checks import cost_check
from wflo_dagster.pipelines import triage_agent
from wflo_dagster.pipelines.cost_report import cost_report_job, daily_cost_report, daily_cost_report_schedule
from wflo_dagster.pipelines.pydantic_ai_research import pydantic_ai_assets, pydantic_ai_research_job
from wflo_dagster.pipelines.research_agent import research_agent_job, research_assets
from wflo_dagster.pipelines.reviewed_release import reviewed_release_assets, reviewed_release_job
from wflo_dagster.pipelines.triage_agent import triage_agent_job, triage_agent_schedule, triage_assets
from wflo_dagster.resources.events import EventSinkResource
from wflo_dagster.resources.llm import LLMResource
from wflo_dagster.resources.sandbox import SandboxResource
from wflo_dagster.sensors.approvals import approvals_sensor
from wflo_dagster.sensors.outbox_relay import outbox_relay_sensor
from wflo_dagster.sensors.rollback import rollback_failed_runs
from wflo_dagster.sensors.run_status import run_close_out_sensors

defs = dg.Definitions(
    assets=[*research_assets, *triage_assets, *reviewed_release_assets, *pydantic_ai_assets, daily_cost_report],
    # the other assets declare theirs with llm_asset(max_cost_usd=...); a graph asset's calls run in
    # its fan-out steps, so its check reads the ledger
    asset_checks=[cost_check(triage_agent.ticket_triage, "0.002")],
    jobs=[research_agent_job, triage_agent_job, cost_report_job, reviewed_release_job, pydantic_ai_research_job],
    schedules=[triage_agent_schedule, daily_cost_report_schedule],
    sensors=[*run_close_out_sensors, approvals_sensor([research_agent_job, triage_agent_job, reviewed_release_job]),
             rollback_failed_runs, outbox_relay_sensor()],
    resources={"llm": LLMResource(), "events": EventSinkResource(), "sandbox": SandboxResource()},
)
