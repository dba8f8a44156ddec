"""Cost and token roll-ups over the ledger: by run, step, workflow, asset, model, provider, tag or day."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypeVarTuple

from sqlalchemy import Label, Select, SQLColumnExpression, String, case, cast, func, select
from sqlalchemy.orm import Session

from wflo_core.ledger.models import BILLED_STATUSES, LLMCall, Run, Workflow
from wflo_core.ledger.reads import DIMENSIONS, Dimension, RollupRow, by_cost, tag_rows

__all__ = ["DIMENSIONS", "Dimension", "RollupRow", "cost_rollup", "run_total"]
_Row = TypeVarTuple("_Row")


def _group_column(dimension: Dimension) -> SQLColumnExpression[str]:
    return {
        "run": LLMCall.run_id,
        "step": func.coalesce(LLMCall.step_key, ""),
        "workflow": Workflow.name,
        "asset": func.coalesce(LLMCall.asset_key, ""),
        "model": LLMCall.model,
        "provider": LLMCall.provider,
        "day": func.substr(cast(LLMCall.created_at, String), 1, 10),
    }[dimension]


def _filtered(query: Select[*_Row], run_id: str | None, workflow: str | None,
              since: datetime | None) -> Select[*_Row]:
    query = query.select_from(LLMCall).join(Run, Run.id == LLMCall.run_id).join(Workflow)
    query = query.where(LLMCall.status.in_(BILLED_STATUSES))
    if run_id:
        query = query.where(LLMCall.run_id == run_id)
    if workflow:
        query = query.where(Workflow.name == workflow)
    if since:
        query = query.where(LLMCall.created_at >= since)
    return query


def cost_rollup(session: Session, by: Dimension, *, run_id: str | None = None, workflow: str | None = None,
                since: datetime | None = None) -> list[RollupRow]:
    """Totals per value of ``by``, most expensive first. Attempts not billed, or still in flight, are not counted."""
    if by == "tag":
        return _tag_rollup(session, run_id, workflow, since)
    key: Label[str] = _group_column(by).label("key")  # SQLAlchemy types this label with an unbound TypeVar
    query = _filtered(select(
        key,
        func.count(LLMCall.id),
        func.sum(case((LLMCall.status == "cache_hit", 1), else_=0)),
        func.coalesce(func.sum(LLMCall.input_tokens), 0),
        func.coalesce(func.sum(LLMCall.output_tokens), 0),
        func.coalesce(func.sum(LLMCall.cost_usd), Decimal(0)),
        func.coalesce(func.sum(LLMCall.saved_usd), Decimal(0)),
        func.coalesce(func.sum(case((LLMCall.status == "estimated", LLMCall.cost_usd), else_=0)), Decimal(0)),
    ), run_id, workflow, since).group_by(key)
    return by_cost(RollupRow(str(k), n, int(h or 0), int(i), int(o), c, s, e)
                   for k, n, h, i, o, c, s, e in session.execute(query))


def _tag_rollup(session: Session, run_id: str | None, workflow: str | None,
                since: datetime | None) -> list[RollupRow]:
    query = _filtered(select(LLMCall.tags, LLMCall.status, LLMCall.input_tokens, LLMCall.output_tokens,
                             LLMCall.cost_usd, LLMCall.saved_usd), run_id, workflow, since)
    return tag_rows(session.execute(query))


def run_total(session: Session, run_id: str) -> Decimal:
    total = session.scalar(select(func.coalesce(func.sum(LLMCall.cost_usd), Decimal(0)))
                           .where(LLMCall.run_id == run_id, LLMCall.status.in_(BILLED_STATUSES)))
    return total if total is not None else Decimal(0)
