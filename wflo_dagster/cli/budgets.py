"""``wflo budgets``: set hard limits and see how much of each is spent, held and left."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation

import typer
from rich.console import Console
from rich.table import Table

from wflo_core.budgets import BudgetBook, BudgetUsage
from wflo_core.budgets.scopes import PERIOD_TEMPLATE_KEY, SCOPES
from wflo_core.config import load_settings
from wflo_core.errors import ConfigError
from wflo_dagster.cli import app
from wflo_dagster.cli.ledger_access import open_ledger

FORMATS = ("table", "json")
PERIOD_KEY = {"day": re.compile(r"\d{4}-\d{2}-\d{2}"), "month": re.compile(r"\d{4}-\d{2}")}

budgets_app = typer.Typer(help="Hard budgets: set limits, list them, show usage.", no_args_is_help=True)
app.add_typer(budgets_app, name="budgets")


def parse_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConfigError(f"SCOPE must be one of {', '.join(SCOPES)}, got {scope!r}")
    return scope


def parse_limit(limit: str) -> Decimal:
    try:
        amount = Decimal(limit.removeprefix("$"))
    except InvalidOperation:
        raise ConfigError(f"LIMIT must be a USD amount like 5 or 0.50, got {limit!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"LIMIT must be a finite amount >= 0, got {limit!r}")
    return amount


def percent_used(usage: BudgetUsage) -> Decimal | None:
    """Spent + held as a share of the limit (None for a zero limit)."""
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
    table = Table(title=title)
    for name in (
        "scope",
        "key",
        "limit USD",
        "spent USD",
        "held USD",
        "remaining USD",
        "% used",
        "on breach",
    ):
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


def _print(rows: list[BudgetUsage], fmt: str, title: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "json":
        typer.echo(json.dumps([usage_dict(u) for u in rows], indent=2))
    else:
        Console(width=max(120, Console().width)).print(usage_table(rows, title))


@budgets_app.command("set")
def set_budget(
    scope: str = typer.Argument(..., help=f"One of {', '.join(SCOPES)}."),
    key: str = typer.Argument(..., help="Run id, job, asset key, tag (team=ml), or '*' for every day/month."),
    limit: str = typer.Argument(..., help="Limit in USD, e.g. 5 or 0.50."),
    on_breach: str = typer.Option("fail", "--on-breach", help="fail the step, or ask for approval."),
) -> None:
    """Set (or change) the limit of one budget; calls are refused before they would pass it."""
    scope, amount = parse_scope(scope), parse_limit(limit)
    if scope in ("day", "month") and key != PERIOD_TEMPLATE_KEY and not PERIOD_KEY[scope].fullmatch(key):
        raise ConfigError(
            f"a {scope} budget's KEY is '*' (every {scope}) or a date like 2026-11-24 / 2026-11"
        )
    ledger = open_ledger(load_settings())
    try:
        with ledger.transaction() as session:
            BudgetBook(ledger).set_limit(session, scope, key, amount, on_breach)
    finally:
        ledger.close()
    typer.echo(f"{scope} budget '{key}' limit set to ${usd(amount)} (on breach: {on_breach})")


@budgets_app.command("list")
def list_budgets(
    scope: str | None = typer.Option(None, "--scope", help="Only budgets of this scope."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Every budget with its limit, spend, open holds and what is left."""
    wanted = parse_scope(scope) if scope else None
    ledger = open_ledger(load_settings())
    try:
        with ledger.transaction() as session:
            rows = [u for u in BudgetBook(ledger).usage(session) if wanted is None or u.scope == wanted]
    finally:
        ledger.close()
    _print(rows, fmt, "budgets")


@budgets_app.command("show")
def show_budget(
    scope: str = typer.Argument(..., help=f"One of {', '.join(SCOPES)}."),
    key: str = typer.Argument(..., help="The budget's key, as given to `wflo budgets set`."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Usage of one budget: spent, held, remaining and percent of the limit."""
    scope = parse_scope(scope)
    ledger = open_ledger(load_settings())
    try:
        with ledger.transaction() as session:
            rows = [u for u in BudgetBook(ledger).usage(session) if u.scope == scope and u.scope_key == key]
    finally:
        ledger.close()
    if not rows:
        raise ConfigError(
            f"no {scope} budget '{key}'; see `wflo budgets list` or create it with "
            f"`wflo budgets set {scope} {key} LIMIT`"
        )
    _print(rows, fmt, f"{scope} budget '{key}'")
