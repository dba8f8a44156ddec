"""``wflo estimate JOB``: the most a job can cost before it runs, from its assets' planned calls."""

from __future__ import annotations

import typer


def estimate_job(job: str = typer.Argument(..., help="Job name in wflo_dagster.definitions."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Upper bound of a job's LLM cost: every planned call at its reservation amount; an asset that can
    call an LLM and plans nothing makes the job unbounded."""
    import json
    from decimal import Decimal

    from wflo_core.budgets.estimate import decode_plan, estimate, total_bound
    from wflo_core.config import load_settings
    from wflo_core.errors import ConfigError
    from wflo_core.keys import PLANNED_CALLS_KEY
    from wflo_core.pricing import PriceCatalog
    from wflo_dagster.definitions import defs
    from wflo_dagster.resources.llm import LLM_RESOURCE_KEY

    try:
        job_def = defs.resolve_job_def(job)
    except Exception:
        raise ConfigError(f"no job named {job!r} in wflo_dagster.definitions") from None
    plans, unplanned = {}, []
    for assets_def in job_def.asset_layer.asset_graph.assets_defs:
        for key, meta in assets_def.metadata_by_key.items():
            if PLANNED_CALLS_KEY in meta:
                raw = meta[PLANNED_CALLS_KEY]
                plans[key.to_user_string()] = decode_plan(getattr(raw, "value", raw))
            elif LLM_RESOURCE_KEY in assets_def.required_resource_keys:
                unplanned.append(key.to_user_string())
    rows = estimate(plans, PriceCatalog.from_settings(load_settings()), unplanned)
    total = total_bound(rows)

    def usd(amount: Decimal | None) -> str:
        return "unbounded" if amount is None else f"{amount:.6f}"

    if as_json:
        typer.echo(json.dumps({"job": job, "upper_bound_usd": None if total is None else str(total),
                               "steps": [{"step": r.step, "calls": r.calls,
                                          "upper_bound_usd": None if r.upper_bound_usd is None
                                          else str(r.upper_bound_usd)} for r in rows]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"worst-case LLM cost of {job}", show_footer=True)
    table.add_column("asset", footer="total")
    table.add_column("planned calls", justify="right", footer=str(sum(r.calls for r in rows)))
    table.add_column("upper bound USD", justify="right", footer=usd(total))
    for r in rows:
        table.add_row(r.step, str(r.calls), usd(r.upper_bound_usd))
    Console().print(table)
    if total is None:
        Console(stderr=True).print("[yellow]unbounded: declare planned_calls= on the assets marked unbounded "
                                   "(planned_calls=[] for one that makes no LLM call)[/]")
