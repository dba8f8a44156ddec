"""Approval requests, audited decisions, timeout policies and auto-approval on a real SQLite ledger."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from wflo_core.approvals import ApprovalBook, ApprovalRequest, ProjectedCostBelow, continuation_tags
from wflo_core.approvals.budget_ask import BudgetAsk, raised_limit
from wflo_core.budgets import BudgetBook, CallScope
from wflo_core.errors import ApprovalError, BudgetExceeded, ConfigError
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import OutboxEvent, Run, utcnow
from wflo_core.ledger.store import Ledger
from wflo_core.runs.close import close_run


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = Ledger(url)
    yield ledger
    ledger.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(ledger: Ledger, clock: Clock) -> ApprovalBook:
    return ApprovalBook(ledger, clock=clock)


def events(ledger: Ledger) -> list[dict]:
    with ledger.transaction() as session:
        return [json.loads(p) for p in session.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id))]


def run_row(ledger: Ledger, run_id: str) -> tuple[str, str | None]:
    with ledger.transaction() as session:
        run = session.get(Run, run_id)
        return run.status, run.status_reason


def gate(book: ApprovalBook, run_id: str = "r1", **kw) -> object:  # type: ignore[no-untyped-def]
    request = ApprovalRequest(reason=kw.pop("reason", "deploy the generated code"), **kw)
    return book.gate(run_id=run_id, workflow="wf", step_key="review", request=request)


def test_request_marks_the_run_waiting_and_emits_requested(book: ApprovalBook, ledger: Ledger) -> None:
    view = gate(book, context={"code": "print(1)", "projected_cost_usd": Decimal("0.25")}, approvers=("ana",))
    assert view.status == "pending" and view.context["projected_cost_usd"] == "0.25"
    assert run_row(ledger, "r1")[0] == "waiting_approval"
    assert view.id in run_row(ledger, "r1")[1]
    assert [e["type"] for e in events(ledger)] == ["io.wflo.approval.requested"]
    assert gate(book).id == view.id, "a retried gate step must find its request, not open a second one"


def test_decision_is_audited_once_and_closes_the_waiting_run(book: ApprovalBook, ledger: Ledger) -> None:
    view = gate(book, approvers=("ana", "bo"))
    with pytest.raises(ApprovalError, match="'eve' may not decide"):
        book.decide(view.id, "approved", by="eve", reason="looks fine")
    decided = book.decide(view.id, "rejected", by="bo", reason="touches prod")
    assert (decided.status, decided.decided_by, decided.decision_reason) == ("rejected", "bo", "touches prod")
    assert decided.decided_at is not None
    with pytest.raises(ApprovalError, match="already rejected by bo"):
        book.decide(view.id, "approved", by="ana", reason="too late")
    status, reason = run_row(ledger, "r1")
    assert status == "canceled" and "rejected by bo: touches prod" in reason
    decided_events = [e for e in events(ledger) if e["type"] == "io.wflo.approval.decided"]
    assert [(e["data"]["decision"], e["data"]["decided_by"]) for e in decided_events] == [("rejected", "bo")]


def test_close_out_leaves_a_waiting_run_to_the_decision(book: ApprovalBook, ledger: Ledger) -> None:
    view = gate(book)
    assert close_run(ledger, BudgetBook(ledger), "r1", "wf", "succeeded") is False
    assert run_row(ledger, "r1")[0] == "waiting_approval"
    book.decide(view.id, "approved", by="ana", reason="ok")
    assert run_row(ledger, "r1")[0] == "succeeded"
    assert [a.id for a in book.awaiting_continuation()] == [view.id]
    book.mark_continued(view.id, "r2")
    assert book.awaiting_continuation() == []


@pytest.mark.parametrize(
    ("policy", "status", "run_status"),
    [("reject", "expired", "canceled"), ("approve", "approved", "succeeded")],
)
def test_timeout_policy(
    book: ApprovalBook, ledger: Ledger, clock: Clock, policy: str, status: str, run_status: str
) -> None:
    view = gate(book, timeout=timedelta(minutes=30), on_timeout=policy)
    clock.now += timedelta(minutes=29)
    assert book.expire_due() == []
    clock.now += timedelta(minutes=2)
    [expired] = book.expire_due()
    assert (expired.id, expired.status, expired.decided_by) == (view.id, status, "wflo:timeout")
    assert run_row(ledger, "r1")[0] == run_status
    assert book.expire_due() == []


def test_escalation_hands_the_request_to_new_approvers_then_rejects(
    book: ApprovalBook, ledger: Ledger, clock: Clock
) -> None:
    view = gate(
        book,
        approvers=("ana",),
        timeout=timedelta(hours=1),
        on_timeout="escalate",
        escalate_to=("lead",),
        escalation_timeout=timedelta(hours=2),
    )
    clock.now += timedelta(hours=1, seconds=1)
    [escalated] = book.expire_due()
    assert (escalated.status, escalated.approvers) == ("escalated", ["lead"])
    assert run_row(ledger, "r1")[0] == "waiting_approval"
    with pytest.raises(ApprovalError, match="'ana' may not decide"):
        book.decide(view.id, "approved", by="ana", reason="mine")
    book.decide(view.id, "approved", by="lead", reason="escalated and fine")
    kinds = [e["data"]["decision"] for e in events(ledger) if e["type"] == "io.wflo.approval.decided"]
    assert kinds == ["escalated", "approved"], "the escalation and the final decision are both published"


def test_escalation_times_out_into_expiry(book: ApprovalBook, clock: Clock) -> None:
    gate(
        book,
        timeout=timedelta(hours=1),
        on_timeout="escalate",
        escalate_to=("lead",),
        escalation_timeout=timedelta(hours=1),
    )
    clock.now += timedelta(hours=1, seconds=1)
    book.expire_due()
    clock.now += timedelta(hours=1, seconds=1)
    [final] = book.expire_due()
    assert final.status == "expired"


def test_auto_approve_rule_decides_without_stopping_the_run(book: ApprovalBook, ledger: Ledger) -> None:
    cheap = book.gate(
        run_id="r1",
        workflow="wf",
        step_key="review",
        rules=[ProjectedCostBelow(Decimal("0.10"))],
        request=ApprovalRequest(reason="run it", context={"projected_cost_usd": "0.05"}),
    )
    assert (cheap.status, cheap.decided_by) == ("approved", "auto:projected_cost_below")
    assert run_row(ledger, "r1")[0] == "running"
    assert book.awaiting_continuation() == [], "approved in-run: nothing to continue"
    dear = book.gate(
        run_id="r2",
        workflow="wf",
        step_key="review",
        rules=[ProjectedCostBelow(Decimal("0.10"))],
        request=ApprovalRequest(reason="run it", context={"projected_cost_usd": "0.50"}),
    )
    assert dear.status == "pending"


def test_a_continuation_finds_the_approval_of_its_parent_run(book: ApprovalBook, ledger: Ledger) -> None:
    view = gate(book)
    book.decide(view.id, "approved", by="ana", reason="go")
    with ledger.transaction() as session:
        ledger.ensure_run(session, "r2", "wf", parent_run_id="r1")
    assert gate(book, run_id="r2").id == view.id
    assert len(book.list()) == 1


def test_unknown_id_and_bad_requests_are_clear_errors(book: ApprovalBook) -> None:
    with pytest.raises(ApprovalError, match="no approval 'apr-nope'; see `wflo approvals list`"):
        book.decide("apr-nope", "approved", by="ana", reason="x")
    with pytest.raises(ConfigError, match="escalate_to"):
        ApprovalRequest(reason="x", timeout=timedelta(hours=1), on_timeout="escalate")
    with pytest.raises(ConfigError, match="needs a timeout"):
        ApprovalRequest(reason="x", on_timeout="approve")
    with pytest.raises(ConfigError, match="JSON-serializable"):
        ApprovalRequest(reason="x", context={"f": object()}).stored_context()


def test_budget_ask_opens_a_request_only_for_an_asking_run_budget(book: ApprovalBook, ledger: Ledger) -> None:
    budgets = BudgetBook(ledger)
    with ledger.transaction() as session:
        budgets.set_limit(session, "run", "r1", Decimal("0.01"), on_breach="ask")
        budgets.set_limit(session, "workflow", "wf", Decimal("0.01"), on_breach="ask")
    err = BudgetExceeded(
        scope="run",
        scope_key="r1",
        limit_usd=Decimal("0.01"),
        spent_usd=Decimal("0.008"),
        held_usd=Decimal(0),
        requested_usd=Decimal("0.004"),
    )
    ask = BudgetAsk(book)
    scope = CallScope(run_id="r1", workflow="wf", step_key="summary")
    with ledger.transaction() as session:
        approval_id = ask(session, err, scope)
        shared = BudgetExceeded(
            scope="workflow",
            scope_key="wf",
            limit_usd=Decimal("0.01"),
            spent_usd=Decimal("0.008"),
            held_usd=Decimal(0),
            requested_usd=Decimal("0.004"),
        )
        assert ask(session, shared, scope) is None, (
            "a budget shared with other runs is never raised by approval"
        )
    view = book.get(approval_id)
    assert view.kind == "budget" and view.context["raise_limit_to_usd"] == "0.02"
    assert raised_limit(err) == Decimal("0.02")
    approved = book.decide(approval_id, "approved", by="ana", reason="worth it")
    budgets.reserve(scope.refs(), "spent-call", Decimal("0.008"))
    with ledger.transaction() as session:
        budgets.settle(session, "spent-call", Decimal("0.008"))
        tags = continuation_tags(
            session, approved, {"wflo/budget_usd": "0.01", "team": "x", "dagster/run_key": "k"}
        )
    assert tags == {
        "wflo/budget_usd": "0.0120000000",
        "team": "x",
        "wflo/parent_run_id": "r1",
        "wflo/approval_id": approval_id,
    }
