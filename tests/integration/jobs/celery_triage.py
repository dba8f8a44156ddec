"""The shipped triage agent with Dagster's Celery executor: every step is a Celery task that any
worker listening on the broker may take (``dagster-celery worker start``), as on separate hosts."""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor

from wflo_dagster.pipelines.triage_agent import DAILY, GROUP, triage_agent_job, triage_assets
from wflo_dagster.resources.llm import LLMResource

celery_triage_job = dg.define_asset_job(
    "celery_triage_job", selection=dg.AssetSelection.groups(GROUP), partitions_def=DAILY,
    executor_def=celery_executor, tags=triage_agent_job.tags,
)
defs = dg.Definitions(assets=triage_assets, jobs=[celery_triage_job], resources={"llm": LLMResource()})
