"""``wflo estimate JOB``: the most a job can cost before it runs, from its assets' planned calls."""

from __future__ import annotations

import json
from decimal import Decimal

import typer
from rich.console import Console
from rich.table import Table

from wflo_core.budgets.estimate import decode_plan, estimate
from wflo_core.config import load_settings
from wflo_core.errors import ConfigError
from wflo_core.keys import PLANNED_CALLS_KEY
from wflo_core.pricing import PriceCatalog
from wflo_dagster.cli import app


@app.command("estimate")
def estimate_job(job: str = typer.Argument(..., help="Job name in wflo_dagster.definitions."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Upper bound of a job's LLM cost: every planned call at its reservation amount."""
    from wflo_dagster.definitions import defs

    try:
        job_def = defs.resolve_job_def(job)
    except Exception:
        raise ConfigError(f"no job named {job!r} in wflo_dagster.definitions") from None
    plans = {}
    for assets_def in job_def.asset_layer.asset_graph.assets_defs:
        for key, meta in assets_def.metadata_by_key.items():
            if PLANNED_CALLS_KEY in meta:
                raw = meta[PLANNED_CALLS_KEY]
                plans[key.to_user_string()] = decode_plan(getattr(raw, "value", raw))
    rows = estimate(plans, PriceCatalog.from_settings(load_settings()))
    total = sum((r.upper_bound_usd for r in rows), Decimal(0))
    if as_json:
        typer.echo(json.dumps({"job": job, "upper_bound_usd": str(total),
                               "steps": [{"step": r.step, "calls": r.calls, "upper_bound_usd": str(r.upper_bound_usd)}
                                         for r in rows]}, indent=2))
        return
    table = Table(title=f"worst-case LLM cost of {job}", show_footer=True)
    table.add_column("asset", footer="total")
    table.add_column("planned calls", justify="right", footer=str(sum(r.calls for r in rows)))
    table.add_column("upper bound USD", justify="right", footer=f"{total:.6f}")
    for r in rows:
        table.add_row(r.step, str(r.calls), f"{r.upper_bound_usd:.6f}")
    Console().print(table)
