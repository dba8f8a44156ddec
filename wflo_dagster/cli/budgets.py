"""``wflo budgets``: set hard limits and see how much of each is spent, held and left."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from decimal import Decimal

    from rich.table import Table

    from wflo_core.budgets import BudgetUsage

FORMATS = ("table", "json")
SCOPE_HELP = "One of run, workflow, asset, materialization, tag, day, month."
"""Spelled out so that ``--help`` needs no SQLAlchemy; a test pins it to ``budgets.scopes.SCOPES``."""
PERIOD_KEY = {"day": re.compile(r"\d{4}-\d{2}-\d{2}"), "month": re.compile(r"\d{4}-\d{2}")}

app = typer.Typer(help="Hard budgets: set limits, list them, show usage.", no_args_is_help=True)


def parse_scope(scope: str) -> str:
    from wflo_core.budgets.scopes import SCOPES
    from wflo_core.errors import ConfigError

    if scope not in SCOPES:
        raise ConfigError(f"SCOPE must be one of {', '.join(SCOPES)}, got {scope!r}")
    return scope


def parse_limit(limit: str) -> Decimal:
    from wflo_core.money import parse_usd

    return parse_usd(limit.removeprefix("$"), "LIMIT")


def percent_used(usage: BudgetUsage) -> Decimal | None:
    """Spent + held as a share of the limit (None for a zero limit)."""
    from decimal import Decimal

    if usage.limit_usd <= 0:
        return None
    return ((usage.spent_usd + usage.held_usd) * 100 / usage.limit_usd).quantize(Decimal("0.1"))


def usd(amount: Decimal) -> str:
    """Exact, without exponent or trailing zeros: ``0E-10`` → ``0``, ``1.5000000000`` → ``1.5``."""
    return format(amount.normalize(), "f")


def usage_dict(usage: BudgetUsage) -> dict[str, object]:
    pct = percent_used(usage)
    return {
        "scope": usage.scope,
        "key": usage.scope_key,
        "limit_usd": usd(usage.limit_usd),
        "spent_usd": usd(usage.spent_usd),
        "held_usd": usd(usage.held_usd),
        "remaining_usd": usd(usage.remaining_usd),
        "percent_used": None if pct is None else str(pct),
        "on_breach": usage.on_breach,
    }


def usage_table(rows: list[BudgetUsage], title: str) -> Table:
    from rich.table import Table

    from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY

    table = Table(title=title)
    for name in ("scope", "key", "limit USD", "spent USD", "held USD", "remaining USD", "% used", "on breach"):
        table.add_column(name, justify="right" if "USD" in name or "%" in name else "left", overflow="fold")
    for u in rows:
        pct = percent_used(u)
        style = (
            "red" if pct is not None and pct >= 90 else "yellow" if pct is not None and pct >= 75 else None
        )
        key = f"{u.scope_key} (each {u.scope})" if u.scope_key == PERIOD_TEMPLATE_KEY else u.scope_key
        table.add_row(
            u.scope,
            key,
            f"{u.limit_usd:.6f}",
            f"{u.spent_usd:.6f}",
            f"{u.held_usd:.6f}",
            f"{u.remaining_usd:.6f}",
            "-" if pct is None else f"{pct}%",
            u.on_breach,
            style=style,
        )
    return table


def _usage(scope: str | None = None, key: str | None = None) -> list[BudgetUsage]:
    """Every budget's usage, optionally only one scope (and key), from the checked ledger."""
    from wflo_core.budgets import BudgetBook
    from wflo_core.config import load_settings
    from wflo_core.ledger import open_ledger

    with open_ledger(load_settings()) as ledger, ledger.transaction() as session:
        return [
            u for u in BudgetBook(ledger).usage(session)
            if (scope is None or u.scope == scope) and (key is None or u.scope_key == key)
        ]


def _print(rows: list[BudgetUsage], fmt: str, title: str) -> None:
    from wflo_core.errors import ConfigError

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "json":
        import json

        typer.echo(json.dumps([usage_dict(u) for u in rows], indent=2))
    else:
        from rich.console import Console

        Console(width=max(120, Console().width)).print(usage_table(rows, title))


@app.command("set")
def set_budget(
    scope: str = typer.Argument(..., help=SCOPE_HELP),
    key: str = typer.Argument(..., help="Run id, job, asset key, tag (team=ml), or '*' for every day/month."),
    limit: str = typer.Argument(..., help="Limit in USD, e.g. 5 or 0.50."),
    on_breach: str = typer.Option("fail", "--on-breach", help="fail the step, or ask for approval."),
) -> None:
    """Set (or change) the limit of one budget; calls are refused before they would pass it."""
    from wflo_core.budgets import BudgetBook
    from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY
    from wflo_core.config import load_settings
    from wflo_core.errors import ConfigError
    from wflo_core.ledger import open_ledger

    scope, amount = parse_scope(scope), parse_limit(limit)
    if scope in ("day", "month") and key != PERIOD_TEMPLATE_KEY and not PERIOD_KEY[scope].fullmatch(key):
        raise ConfigError(
            f"a {scope} budget's KEY is '*' (every {scope}) or a date like 2026-11-24 / 2026-11"
        )
    with open_ledger(load_settings()) as ledger, ledger.transaction() as session:
        BudgetBook(ledger).set_limit(session, scope, key, amount, on_breach)
    typer.echo(f"{scope} budget '{key}' limit set to ${usd(amount)} (on breach: {on_breach})")


@app.command("list")
def list_budgets(
    scope: str | None = typer.Option(None, "--scope", help="Only budgets of this scope."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Every budget with its limit, spend, open holds and what is left."""
    _print(_usage(parse_scope(scope) if scope else None), fmt, "budgets")


@app.command("show")
def show_budget(
    scope: str = typer.Argument(..., help=SCOPE_HELP),
    key: str = typer.Argument(..., help="The budget's key, as given to `wflo budgets set`."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Usage of one budget: spent, held, remaining and percent of the limit."""
    from wflo_core.errors import ConfigError

    rows = _usage(parse_scope(scope), key)
    if not rows:
        raise ConfigError(
            f"no {scope} budget '{key}'; see `wflo budgets list` or create it with "
            f"`wflo budgets set {scope} {key} LIMIT`"
        )
    _print(rows, fmt, f"{scope} budget '{key}'")
