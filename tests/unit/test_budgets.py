"""Budget rules on the embedded ledger: scopes, settlement, alerts once each, stale holds expiring."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from wflo_core.budgets import BudgetBook, CallScope
from wflo_core.config import load_settings
from wflo_core.errors import BudgetExceeded, ConfigError
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import BudgetHold
from wflo_core.ledger.store import Ledger

D = Decimal


@pytest.fixture
def ledger():
    url = load_settings().ledger_url
    upgrade(url)
    ledger = Ledger(url)
    yield ledger
    ledger.close()


SCOPE = CallScope(run_id="r1", workflow="wf", step_key="s", asset_key="a", tags={"team": "ml"})


def test_every_applicable_scope_is_held_and_the_tightest_refuses(ledger) -> None:
    book = BudgetBook(ledger)
    with ledger.transaction() as s:
        book.set_limit(s, "workflow", "wf", D("10"))
        book.set_limit(s, "tag", "team=ml", D("0.05"))
        book.set_limit(s, "asset", "other-asset", D("0"))  # does not apply to SCOPE
    holds = book.reserve(SCOPE.refs(), "c1", D("0.03"))
    assert {(h.scope, h.scope_key) for h in holds} == {("workflow", "wf"), ("tag", "team=ml")}
    with pytest.raises(BudgetExceeded) as err:
        book.reserve(SCOPE.refs(), "c2", D("0.03"))
    assert (err.value.scope, err.value.limit_usd, err.value.held_usd) == ("tag", D("0.05"), D("0.03"))
    assert "tag budget 'team=ml' limit $0.05" in str(err.value)
    with ledger.transaction() as s:  # all or nothing: the refused call held nothing on the workflow budget
        usage = {u.scope: u for u in book.usage(s)}
    assert usage["workflow"].held_usd == D("0.03")


def test_settle_moves_the_actual_cost_from_held_to_spent(ledger) -> None:
    book = BudgetBook(ledger)
    with ledger.transaction() as s:
        book.set_limit(s, "run", "r1", D("1"))
    book.reserve(SCOPE.refs(), "c1", D("0.30"))
    with ledger.transaction() as s:
        book.settle(s, "c1", D("0.12"))
    with ledger.transaction() as s:
        (run,) = book.usage(s)
    assert (run.spent_usd, run.held_usd, run.remaining_usd) == (D("0.12"), D("0"), D("0.88"))


def test_threshold_alerts_fire_once_each(ledger) -> None:
    book = BudgetBook(ledger, alert_thresholds=[50, 75, 90])
    with ledger.transaction() as s:
        book.set_limit(s, "run", "r1", D("1"))
    crossed = []
    for i, cost in enumerate(["0.40", "0.20", "0.20", "0.01", "0.10"]):
        book.reserve(SCOPE.refs(), f"c{i}", D(cost))
        with ledger.transaction() as s:
            crossed.append([a.percent for a in book.settle(s, f"c{i}", D(cost))])
    assert crossed == [[], [50], [75], [], [90]]


def test_day_and_month_templates_make_one_counter_per_period(ledger) -> None:
    book = BudgetBook(ledger)
    with ledger.transaction() as s:
        book.set_limit(s, "day", "*", D("0.10"))
    day1 = CallScope(run_id="r1", workflow="wf").refs(datetime(2026, 11, 24, 23, 59, tzinfo=UTC))
    day2 = CallScope(run_id="r2", workflow="wf").refs(datetime(2026, 11, 25, 0, 1, tzinfo=UTC))
    book.reserve(day1, "c1", D("0.08"))
    with pytest.raises(BudgetExceeded, match="day budget '2026-11-24'"):
        book.reserve(day1, "c2", D("0.08"))
    book.reserve(day2, "c3", D("0.08"))  # a new day, a new counter


def test_an_expired_hold_is_charged_at_its_bound_never_at_zero(ledger) -> None:
    """A crashed step's call may have been billed: its expired hold becomes estimated spend."""
    book = BudgetBook(ledger, hold_ttl=timedelta(seconds=0.2))
    with ledger.transaction() as s:
        book.set_limit(s, "run", "r1", D("0.10"))
    book.reserve(SCOPE.refs(), "crashed-call", D("0.08"))  # never settled: its process died
    time.sleep(0.3)
    with pytest.raises(BudgetExceeded, match="spent \\$0.08"):
        book.reserve(SCOPE.refs(), "next-call", D("0.08"))
    with ledger.transaction() as s:
        (run,) = book.usage(s)
        assert s.scalar(select(BudgetHold.status).where(BudgetHold.call_key == "crashed-call")) == "estimated"
    assert (run.spent_usd, run.held_usd) == (D("0.08"), D("0"))


def test_with_unknown_billing_release_an_expired_hold_stops_blocking(ledger) -> None:
    book = BudgetBook(ledger, hold_ttl=timedelta(seconds=0.2), unknown_billing="release")
    with ledger.transaction() as s:
        book.set_limit(s, "run", "r1", D("0.10"))
    book.reserve(SCOPE.refs(), "crashed-call", D("0.08"))
    time.sleep(0.3)
    book.reserve(SCOPE.refs(), "next-call", D("0.08"))
    with ledger.transaction() as s:
        (run,) = book.usage(s)
    assert (run.spent_usd, run.held_usd) == (D("0"), D("0.08"))


def test_a_late_settlement_replaces_the_estimate_with_the_actual_cost(ledger) -> None:
    book = BudgetBook(ledger, hold_ttl=timedelta(seconds=0.2))
    with ledger.transaction() as s:
        book.set_limit(s, "run", "r1", D("1"))
    book.reserve(SCOPE.refs(), "slow-call", D("0.30"))
    time.sleep(0.3)
    with ledger.transaction() as s:
        assert book.expire_stale(s) == 1
        assert book.expire_stale(s) == 0  # a hold ends once
    with ledger.transaction() as s:
        book.settle(s, "slow-call", D("0.12"))
        book.settle(s, "slow-call", D("0.12"))  # settling twice changes nothing
    with ledger.transaction() as s:
        (run,) = book.usage(s)
    assert (run.spent_usd, run.held_usd) == (D("0.12"), D("0"))


def test_invalid_limits_are_clear_errors(ledger) -> None:
    book = BudgetBook(ledger)
    with ledger.transaction() as s, pytest.raises(ConfigError, match="must be >= 0"):
        book.set_limit(s, "run", "r1", D("-1"))
    with ledger.transaction() as s, pytest.raises(ConfigError, match="on_breach must be"):
        book.set_limit(s, "run", "r1", D("1"), on_breach="maybe")


def test_an_estimate_is_taken_back_when_the_provider_says_it_did_not_bill(ledger) -> None:
    book = BudgetBook(ledger, hold_ttl=timedelta(seconds=0.2))
    with ledger.transaction() as s:
        book.set_limit(s, "run", "r1", D("1"))
    book.reserve(SCOPE.refs(), "slow-429", D("0.30"))
    time.sleep(0.3)
    with ledger.transaction() as s:
        book.expire_stale(s)
    with ledger.transaction() as s:
        assert book.usage(s)[0].spent_usd == D("0.30")
        book.release(s, "slow-429")  # then the answer arrives: a 429, not billed
    with ledger.transaction() as s:
        (run,) = book.usage(s)
    assert (run.spent_usd, run.held_usd) == (D("0"), D("0"))
