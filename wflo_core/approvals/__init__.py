"""Human approval gates: requests, audited decisions, timeout policies, auto-approve rules."""

from wflo_core.approvals.book import ApprovalBook, ApprovalView, approval_id
from wflo_core.approvals.budget_ask import BudgetAsk
from wflo_core.approvals.continuation import continuation_tags
from wflo_core.approvals.policy import (
    ApprovalRequest,
    AutoApproveRule,
    ProjectedCostBelow,
    TimeoutPolicy,
)
from wflo_core.runs.waiting import WAITING_APPROVAL

__all__ = [
    "WAITING_APPROVAL",
    "ApprovalBook",
    "ApprovalRequest",
    "ApprovalView",
    "AutoApproveRule",
    "BudgetAsk",
    "ProjectedCostBelow",
    "TimeoutPolicy",
    "approval_id",
    "continuation_tags",
]
