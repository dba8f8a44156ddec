"""The Dagster code location: example agent pipelines, wflo resources, sensors and schedules."""

from __future__ import annotations

import dagster as dg

from wflo_dagster.pipelines.research_agent import research_agent_job, research_assets
from wflo_dagster.resources.llm import LLMResource
from wflo_dagster.sensors.run_status import run_close_out_sensors

defs = dg.Definitions(
    assets=[*research_assets],
    jobs=[research_agent_job],
    sensors=[*run_close_out_sensors],
    resources={"llm": LLMResource()},
)
