"""The daily cost report: what one UTC day's LLM calls cost, by workflow and model, as markdown and a chart.

Plain functions over the ledger, so the report asset stays a thin shell and tests can call them directly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wflo_core.ledger.models import BILLED_STATUSES, LLMCall, Run, Workflow


@dataclass(frozen=True, slots=True)
class DailyCostRow:
    workflow: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    saved_usd: Decimal


def daily_cost_rows(session: Session, day: date) -> list[DailyCostRow]:
    """Billed calls (not failed ones) created on ``day`` (UTC), per workflow and model, costliest first."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    query = (
        select(Workflow.name, LLMCall.model, func.count(LLMCall.id),
               func.coalesce(func.sum(LLMCall.input_tokens), 0),
               func.coalesce(func.sum(LLMCall.output_tokens), 0),
               func.coalesce(func.sum(LLMCall.cost_usd), Decimal(0)),
               func.coalesce(func.sum(LLMCall.saved_usd), Decimal(0)))
        .select_from(LLMCall).join(Run, Run.id == LLMCall.run_id).join(Workflow)
        .where(LLMCall.status.in_(BILLED_STATUSES), LLMCall.created_at >= start,
               LLMCall.created_at < start + timedelta(days=1))
        .group_by(Workflow.name, LLMCall.model)
    )
    rows = [DailyCostRow(w, m, n, int(i), int(o), c, s) for w, m, n, i, o, c, s in session.execute(query)]
    return sorted(rows, key=lambda r: (-r.cost_usd, r.workflow, r.model))


def cost_by_model(rows: list[DailyCostRow]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        totals[row.model] += row.cost_usd
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def cost_markdown(day: date, rows: list[DailyCostRow]) -> str:
    """A markdown table (exact amounts, 6 decimals for reading) with a total line."""
    lines = [f"### LLM cost on {day.isoformat()} (UTC)", "",
             "| workflow | model | calls | input tokens | output tokens | cost USD | saved USD |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.workflow} | {r.model} | {r.calls} | {r.input_tokens} | {r.output_tokens} | "
              f"{r.cost_usd:.6f} | {r.saved_usd:.6f} |" for r in rows]
    total = sum((r.cost_usd for r in rows), Decimal(0))
    saved = sum((r.saved_usd for r in rows), Decimal(0))
    lines.append(f"| **total** | | **{sum(r.calls for r in rows)}** | {sum(r.input_tokens for r in rows)} | "
                 f"{sum(r.output_tokens for r in rows)} | **{total:.6f}** | {saved:.6f} |")
    if not rows:
        lines.append("\nNo billed LLM calls on this day.")
    return "\n".join(lines)


def cost_by_model_chart(day: date, rows: list[DailyCostRow], path: Path) -> Path:
    """A horizontal bar chart of cost per model, written as PNG (matplotlib's headless Agg backend)."""
    from matplotlib.figure import Figure

    totals = cost_by_model(rows)
    models = list(totals)[::-1]
    figure = Figure(figsize=(7, 1.2 + 0.45 * max(1, len(models))), dpi=100)
    axes = figure.add_subplot()
    bars = axes.barh(models or ["(no calls)"], [float(totals[m]) for m in models] or [0.0], color="#4f43dd")
    axes.bar_label(bars, labels=[f"${totals[m]:.6f}" for m in models] or ["$0"], padding=3, fontsize=8)
    axes.set_xlabel("cost (USD)")
    axes.set_title(f"LLM cost by model, {day.isoformat()} (UTC)")
    axes.margins(x=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
