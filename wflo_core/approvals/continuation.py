"""The run that carries on after an approval: its tags, and its share of the run budget.

A continuation is a new Dagster run, so it gets a new run budget. To keep the *logical* run under
one limit, the continuation's limit is what the stopped run had left; after a budget approval it is
the approved (raised) limit minus what the stopped run already spent. No other run is affected.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from wflo_core.approvals.book import ApprovalView
from wflo_core.keys import APPROVAL_TAG, BUDGET_TAG, PARENT_RUN_TAG, WAITING_TAG
from wflo_core.ledger.models import Budget

NOT_INHERITED = ("dagster/", APPROVAL_TAG, PARENT_RUN_TAG, WAITING_TAG, ".dagster/")


def continuation_tags(
    session: Session, approval: ApprovalView, parent_tags: Mapping[str, str]
) -> dict[str, str]:
    """The stopped run's own tags, linked to it and the approval, with the remaining run budget."""
    tags = {k: v for k, v in parent_tags.items() if not k.startswith(NOT_INHERITED)}
    tags[PARENT_RUN_TAG] = approval.run_id
    tags[APPROVAL_TAG] = approval.id
    budget = session.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == approval.run_id))
    if budget is not None:
        limit = budget.limit_usd
        if approval.kind == "budget":
            limit = Decimal(str(approval.context["raise_limit_to_usd"]))
        tags[BUDGET_TAG] = format(max(Decimal(0), limit - budget.spent_usd), "f")
    return tags
