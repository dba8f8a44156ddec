"""Human approval gates: requests, audited decisions, timeout policies, auto-approve rules."""

from wflo_core.approvals.book import ApprovalBook, ApprovalView, approval_id
from wflo_core.approvals.budget_ask import BudgetAsk
from wflo_core.approvals.continuation import continuation_tags
from wflo_core.approvals.policy import (
    APPROVAL_TAG,
    WAITING_TAG,
    ApprovalRequest,
    AutoApproveRule,
    ProjectedCostBelow,
    TimeoutPolicy,
)
from wflo_core.approvals.run_status import WAITING_APPROVAL

__all__ = [
    "APPROVAL_TAG",
    "WAITING_APPROVAL",
    "WAITING_TAG",
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
