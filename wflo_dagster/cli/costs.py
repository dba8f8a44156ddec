"""``wflo costs``: cost roll-ups from the ledger as a table, JSON or CSV.

Read through the database driver (``wflo_core.ledger.reads``), not the ORM: SQLAlchemy and the
ledger models would be most of the command's time; rich is imported only for the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from wflo_core.ledger.reads import RollupRow

FORMATS = ("table", "json", "csv")
BY_HELP = "Group by: run, step, workflow, asset, model, provider, tag or day."
"""Spelled out so that ``--help`` needs no SQLAlchemy; a test pins it to ``rollups.DIMENSIONS``."""


def rollup_table(rows: list[RollupRow], by: str, title: str) -> Table:
    from decimal import Decimal

    from rich.table import Table

    table = Table(title=title, show_footer=True)
    total = sum((r.cost_usd for r in rows), Decimal(0))
    saved = sum((r.saved_usd for r in rows), Decimal(0))
    estimated = sum((r.estimated_usd for r in rows), Decimal(0))
    table.add_column(by, footer="total")
    table.add_column("calls", justify="right", footer=str(sum(r.calls for r in rows)))
    table.add_column("cache hits", justify="right", footer=str(sum(r.cache_hits for r in rows)))
    table.add_column("input tok", justify="right", footer=str(sum(r.input_tokens for r in rows)))
    table.add_column("output tok", justify="right", footer=str(sum(r.output_tokens for r in rows)))
    table.add_column("cost USD", justify="right", footer=f"{total:.6f}")
    table.add_column("of which estimated", justify="right", footer=f"{estimated:.6f}")
    table.add_column("saved USD", justify="right", footer=f"{saved:.6f}")
    for r in rows:
        table.add_row(r.key or "-", str(r.calls), str(r.cache_hits), str(r.input_tokens), str(r.output_tokens),
                      f"{r.cost_usd:.6f}", f"{r.estimated_usd:.6f}", f"{r.saved_usd:.6f}")
    return table


def _row_dict(r: RollupRow) -> dict[str, object]:
    return {"key": r.key, "calls": r.calls, "cache_hits": r.cache_hits, "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens, "cost_usd": str(r.cost_usd),
            "settled_usd": str(r.cost_usd - r.estimated_usd), "estimated_usd": str(r.estimated_usd),
            "saved_usd": str(r.saved_usd)}


def costs(
    by: str = typer.Option("model", "--by", help=BY_HELP),
    run: str | None = typer.Option(None, "--run", help="Only this Dagster run id."),
    workflow: str | None = typer.Option(None, "--workflow", help="Only this job/workflow."),
    since: str | None = typer.Option(None, "--since", help="Only calls at or after this ISO date/time."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Show what LLM calls cost, grouped by run, step, workflow, asset, model, provider, tag or day."""
    from datetime import datetime

    from wflo_core.config import load_settings
    from wflo_core.errors import ConfigError
    from wflo_core.ledger.reads import DIMENSIONS, read_rollup

    if by not in DIMENSIONS:
        raise ConfigError(f"--by must be one of {', '.join(DIMENSIONS)}, got {by!r}")
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        since_at = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise ConfigError(f"--since must be an ISO date like 2026-11-24, got {since!r}") from None
    rows = read_rollup(load_settings(), by, run_id=run, workflow=workflow, since=since_at)  # type: ignore[arg-type]
    if fmt == "json":
        import json

        typer.echo(json.dumps([_row_dict(r) for r in rows], indent=2))
    elif fmt == "csv":
        import csv
        import sys

        writer = csv.DictWriter(sys.stdout, fieldnames=list(_row_dict(rows[0]).keys()) if rows else ["key"])
        writer.writeheader()
        writer.writerows(_row_dict(r) for r in rows)
    else:
        from rich.console import Console

        Console().print(rollup_table(rows, by, f"LLM cost by {by}"))
