"""A run's cost summary as tags, so a scheduler's run list (Dagster's Runs page) shows what each run cost."""

from decimal import Decimal

from sqlalchemy.orm import Session

from wflo_core.keys import RUN_CALLS_TAG, RUN_COST_TAG, RUN_TOKENS_TAG
from wflo_core.ledger.rollups import cost_rollup


def run_cost_tags(session: Session, run_id: str) -> dict[str, str]:
    """The run's exact cost, billed calls and tokens, from the ledger."""
    rows = cost_rollup(session, "run", run_id=run_id)
    cost = sum((r.cost_usd for r in rows), Decimal(0))
    return {RUN_COST_TAG: format(cost.normalize(), "f"), RUN_CALLS_TAG: str(sum(r.calls for r in rows)),
            RUN_TOKENS_TAG: str(sum(r.input_tokens + r.output_tokens for r in rows))}
