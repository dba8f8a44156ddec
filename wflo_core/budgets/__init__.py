"""Hard budgets: scopes, reservations before each call, settlement and threshold alerts."""

from wflo_core.budgets.reservations import BudgetBook as BudgetBook
from wflo_core.budgets.reservations import BudgetUsage as BudgetUsage
from wflo_core.budgets.reservations import Hold as Hold
from wflo_core.budgets.reservations import ThresholdCrossed as ThresholdCrossed
from wflo_core.budgets.scopes import CallScope as CallScope
from wflo_core.budgets.scopes import ScopeRef as ScopeRef

__all__ = ["BudgetBook", "BudgetUsage", "CallScope", "Hold", "ScopeRef", "ThresholdCrossed"]
