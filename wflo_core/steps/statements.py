"""A step's open and close as one Postgres statement each, so wflo's own work per step stays ~one round trip.

Each statement does the common case or nothing, and says which; the recorder then takes the ORM
path, which handles everything: a run not recorded yet (the run's first step writes its row and
``RunStarted``), a retried attempt (closing the earlier ones), a re-executed run (its budget depends
on its parent's spend), a step that opened no row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from wflo_core.budgets import CallScope
from wflo_core.events.outbox import EventRecorder, outbox_insert, outbox_params
from wflo_core.events.schemas import EventData
from wflo_core.ledger.models import utcnow
from wflo_core.ledger.store import Ledger

if TYPE_CHECKING:
    from wflo_core.steps.recorder import StepInfo

OPEN = """
WITH run AS (
    SELECT FROM runs WHERE id = %(run_id)s
), limits AS (
    INSERT INTO budgets (scope, scope_key, limit_usd, spent_usd, held_usd, on_breach, alerts_sent, created_at,
                         updated_at)
    SELECT b.scope, b.scope_key, b.limit_usd, 0, 0, b.on_breach, '[]', %(now)s, %(now)s
    FROM unnest(%(b_scope)s::text[], %(b_key)s::text[], %(b_limit)s::numeric[], %(b_on_breach)s::text[])
        AS b(scope, scope_key, limit_usd, on_breach)
    WHERE EXISTS (SELECT FROM run)
    ON CONFLICT (scope, scope_key) DO NOTHING
), step AS (
    INSERT INTO steps (run_id, step_key, attempt, asset_key, status, tags, started_at)
    SELECT %(run_id)s, %(step_key)s, %(attempt)s, %(asset_key)s, 'running', %(tags)s::json, %(now)s
    WHERE EXISTS (SELECT FROM run)
    ON CONFLICT (run_id, step_key, attempt) DO NOTHING
), events AS (
    """ + outbox_insert("EXISTS (SELECT FROM run)") + """
)
SELECT EXISTS (SELECT FROM run)
"""
"""Ensure the step's budgets (never lowering one), open its row and queue ``StepStarted``, if its run is recorded."""

CLOSE = """
WITH closed AS (
    UPDATE steps SET status = %(status)s, error = %(error)s, ended_at = %(now)s
    WHERE run_id = %(run_id)s AND step_key = %(step_key)s AND attempt = %(attempt)s
    RETURNING id
), events AS (
    """ + outbox_insert("EXISTS (SELECT FROM closed)") + """
)
SELECT EXISTS (SELECT FROM closed)
"""
"""Close the attempt's row and queue its closing event, if the row exists."""


def open_step(ledger: Ledger, record_event: EventRecorder, info: StepInfo, scope: CallScope,
              limits: Sequence[tuple[str, str, Decimal, str]], started: EventData) -> bool:
    """Open the step in one statement; False (nothing written) if its run is not recorded yet."""
    opened: bool = ledger.statement(OPEN, {
        "run_id": info.run_id, "step_key": info.step_key, "attempt": info.attempt, "asset_key": scope.asset_key,
        "tags": json.dumps(dict(scope.tags)), "now": utcnow(),
        "b_scope": [s for s, _, _, _ in limits], "b_key": [k for _, k, _, _ in limits],
        "b_limit": [usd for _, _, usd, _ in limits], "b_on_breach": [b for _, _, _, b in limits],
        **outbox_params(record_event, [started]),
    })[0][0]
    return opened


def close_step(ledger: Ledger, record_event: EventRecorder, info: StepInfo, status: str, error: str | None,
               closed_event: EventData) -> bool:
    """Close the step's attempt in one statement; False (nothing written) if it has no row."""
    closed: bool = ledger.statement(CLOSE, {
        "run_id": info.run_id, "step_key": info.step_key, "attempt": info.attempt, "status": status,
        "error": error, "now": utcnow(), **outbox_params(record_event, [closed_event]),
    })[0][0]
    return closed
