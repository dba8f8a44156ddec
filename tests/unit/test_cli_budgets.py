"""``wflo budgets`` through the real entry point, on the embedded SQLite ledger."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.unit.cli_support import run_wflo as wflo
from wflo_core.budgets import BudgetBook, ScopeRef
from wflo_core.config import load_settings
from wflo_core.ledger.store import Ledger


def test_set_then_show_reports_spent_held_remaining_and_percent(capsys, monkeypatch) -> None:
    assert wflo(capsys, monkeypatch, "budgets", "set", "workflow", "triage", "2.00")[0] == 0
    ledger = Ledger(load_settings().ledger_url)
    book = BudgetBook(ledger)
    refs = [ScopeRef("workflow", "triage")]
    book.reserve(refs, "call-1", Decimal("0.50"))
    with ledger.transaction() as session:
        book.settle(session, "call-1", Decimal("0.30"))
    book.reserve(refs, "call-2", Decimal("0.20"))
    ledger.close()

    code, out, _ = wflo(capsys, monkeypatch, "budgets", "show", "workflow", "triage", "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {
            "scope": "workflow",
            "key": "triage",
            "limit_usd": "2",
            "spent_usd": "0.3",
            "held_usd": "0.2",
            "remaining_usd": "1.5",
            "percent_used": "25.0",
            "on_breach": "fail",
        }
    ]
    code, out, _ = wflo(capsys, monkeypatch, "budgets", "show", "workflow", "triage")
    assert code == 0 and "25.0%" in out and "1.500000" in out


def test_set_changes_an_existing_limit_and_on_breach(capsys, monkeypatch) -> None:
    wflo(capsys, monkeypatch, "budgets", "set", "tag", "team=ml", "1")
    code, out, _ = wflo(
        capsys, monkeypatch, "budgets", "set", "tag", "team=ml", "$3.25", "--on-breach", "ask"
    )
    assert code == 0 and "$3.25" in out
    _, out, _ = wflo(capsys, monkeypatch, "budgets", "list", "--format", "json")
    assert [(b["key"], b["limit_usd"], b["on_breach"]) for b in json.loads(out)] == [
        ("team=ml", "3.25", "ask")
    ]


def test_list_filters_by_scope_and_shows_the_every_day_template(capsys, monkeypatch) -> None:
    wflo(capsys, monkeypatch, "budgets", "set", "day", "*", "5")
    wflo(capsys, monkeypatch, "budgets", "set", "run", "r-1", "0.5")
    _, out, _ = wflo(capsys, monkeypatch, "budgets", "list", "--scope", "day", "--format", "json")
    assert [(b["scope"], b["key"]) for b in json.loads(out)] == [("day", "*")]
    _, out, _ = wflo(capsys, monkeypatch, "budgets", "list")
    assert "* (each day)" in out and "r-1" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("budgets", "set", "planet", "x", "1"), "SCOPE must be one of run, workflow"),
        (("budgets", "set", "run", "x", "lots"), "LIMIT must be a decimal USD amount"),
        (("budgets", "set", "run", "x", "--", "-1"), "LIMIT must be a finite amount >= 0"),
        (("budgets", "set", "run", "x", "1", "--on-breach", "maybe"), "on_breach must be one of fail, ask, fit"),
        (("budgets", "set", "day", "tuesday", "1"), "a day budget's KEY is '*'"),
        (("budgets", "show", "run", "missing"), "no run budget 'missing'; see `wflo budgets list`"),
        (("budgets", "list", "--format", "xml"), "--format must be one of table, json"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(capsys, monkeypatch, args, expected) -> None:
    code, out, err = wflo(capsys, monkeypatch, *args)
    assert code == 1
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
