"""A run budget with ``on_breach="ask"``: a refused call opens an approval request instead of failing.

The gateway calls :class:`BudgetAsk` when a reservation is refused. If the breached budget is the
run's own and asks, the request carries the numbers a reviewer needs and the limit approval would
grant; the step then stops (``AwaitingApproval``) and the approved continuation run gets the
raised limit. Budgets shared with other runs (workflow, tag, day...) are never raised by an
approval: they fail as configured.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from wflo_core.approvals.book import ApprovalBook
from wflo_core.approvals.policy import ApprovalRequest
from wflo_core.budgets.scopes import CallScope
from wflo_core.errors import AwaitingApproval, BudgetExceeded
from wflo_core.ledger.models import Budget


def raised_limit(err: BudgetExceeded) -> Decimal:
    """What approval raises the run's limit to: enough for the refused call, and at least double."""
    needed = err.spent_usd + err.held_usd + err.requested_usd
    return max(needed, err.limit_usd * 2)


class BudgetAsk:
    """``GatewayParts.ask_approval``: returns the approval id when the refused budget asks, else None."""

    def __init__(self, book: ApprovalBook) -> None:
        self.book = book

    def __call__(self, session: Session, err: BudgetExceeded, scope: CallScope) -> str | None:
        if err.scope != "run":
            return None
        budget = session.scalar(
            select(Budget).where(Budget.scope == err.scope, Budget.scope_key == err.scope_key)
        )
        if budget is None or budget.on_breach != "ask":
            return None
        raise_to = raised_limit(err)
        request = ApprovalRequest(
            reason=(
                f"run budget ${err.limit_usd} would be exceeded (spent ${err.spent_usd}, "
                f"held ${err.held_usd}, next call needs up to ${err.requested_usd}); "
                f"approve to raise this run's limit to ${raise_to}"
            ),
            context={
                "scope": err.scope,
                "scope_key": err.scope_key,
                "limit_usd": err.limit_usd,
                "spent_usd": err.spent_usd,
                "held_usd": err.held_usd,
                "requested_usd": err.requested_usd,
                "raise_limit_to_usd": raise_to,
                "projected_cost_usd": err.requested_usd,
            },
            kind="budget",
        )
        self.book.ledger.ensure_run(session, scope.run_id, scope.workflow)
        return self.book.open(
            session, run_id=scope.run_id, step_key=scope.step_key or "-", request=request
        ).id


def awaiting(err: BudgetExceeded, approval_id: str) -> AwaitingApproval:
    return AwaitingApproval(
        f"AwaitingApproval: {err.scope} budget '{err.scope_key}' limit ${err.limit_usd} would be exceeded "
        f"(spent ${err.spent_usd}, this call needs up to ${err.requested_usd}); "
        f"approval {approval_id} requested. "
        f"Continue with `wflo approvals approve {approval_id} --by NAME --reason WHY` (the run goes on in a "
        f"new run with a raised limit) or stop it with `wflo approvals reject {approval_id} ...`",
        approval_id=approval_id,
        scope=err.scope,
        scope_key=err.scope_key,
    )
