"""A per-run cost summary as Dagster run tags, so the Runs page shows what every run cost."""

from decimal import Decimal

import dagster as dg
from sqlalchemy.orm import Session

from wflo_core.ledger.rollups import cost_rollup

RUN_COST_TAG = "wflo/cost_usd"
RUN_CALLS_TAG = "wflo/llm_calls"
RUN_TOKENS_TAG = "wflo/tokens"


def run_cost_tags(session: Session, run_id: str) -> dict[str, str]:
    """The run's exact cost, billed calls and tokens, from the ledger."""
    rows = cost_rollup(session, "run", run_id=run_id)
    cost = sum((r.cost_usd for r in rows), Decimal(0))
    return {RUN_COST_TAG: format(cost.normalize(), "f"), RUN_CALLS_TAG: str(sum(r.calls for r in rows)),
            RUN_TOKENS_TAG: str(sum(r.input_tokens + r.output_tokens for r in rows))}


def tag_run_with_cost(instance: dg.DagsterInstance, session: Session, run_id: str) -> dict[str, str]:
    tags = run_cost_tags(session, run_id)
    instance.add_run_tags(run_id, tags)
    return tags
