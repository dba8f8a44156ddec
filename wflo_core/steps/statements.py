"""A step's open and close as one Postgres statement each, so wflo's own work per step stays ~one round trip.

The open handles a run's first attempts, the run's first step included (it records the run and
``RunStarted``); the close, an attempt whose row exists (it says whether). The recorder takes the
ORM path for the rest: a retried attempt (closing the earlier ones), a re-executed run (its budget
depends on its parent's spend), a step that opened no row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from wflo_core.budgets import CallScope
from wflo_core.events.outbox import EventRecorder, outbox_insert, outbox_insert_each, outbox_params
from wflo_core.events.schemas import EventData, RunStarted
from wflo_core.ledger.models import utcnow
from wflo_core.ledger.store import Ledger

if TYPE_CHECKING:
    from wflo_core.steps.recorder import StepInfo

OPEN = """
WITH known AS (
    SELECT FROM runs WHERE id = %(run_id)s
), workflow AS (
    INSERT INTO workflows (name, created_at)
    SELECT %(workflow)s, %(now)s WHERE NOT EXISTS (SELECT FROM known)
    ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
    RETURNING id
), new_run AS (
    INSERT INTO runs (id, workflow_id, status, tags, started_at)
    SELECT %(run_id)s, id, 'running', %(run_tags)s::json, %(now)s FROM workflow
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), limits AS (
    INSERT INTO budgets (scope, scope_key, limit_usd, spent_usd, held_usd, on_breach, alerts_sent, created_at,
                         updated_at)
    SELECT b.scope, b.scope_key, b.limit_usd, 0, 0, b.on_breach, '[]', %(now)s, %(now)s
    FROM unnest(%(b_scope)s::text[], %(b_key)s::text[], %(b_limit)s::numeric[], %(b_on_breach)s::text[])
        AS b(scope, scope_key, limit_usd, on_breach)
    ON CONFLICT (scope, scope_key) DO NOTHING
), step AS (
    INSERT INTO steps (run_id, step_key, attempt, asset_key, status, tags, started_at)
    VALUES (%(run_id)s, %(step_key)s, %(attempt)s, %(asset_key)s, 'running', %(tags)s::json, %(now)s)
    ON CONFLICT (run_id, step_key, attempt) DO NOTHING
), events AS (
    """ + outbox_insert_each(["EXISTS (SELECT FROM new_run)", "true"]) + """
)
SELECT EXISTS (SELECT FROM new_run)
"""
"""Record the run (and its workflow, with ``RunStarted``) unless it is, ensure the step's budgets
(never lowering one), open its row and queue ``StepStarted``. The run, read first, is the common
case's only extra work; a run recorded concurrently is left to its writer (``ON CONFLICT``)."""

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
              limits: Sequence[tuple[str, str, Decimal, str]], started: EventData) -> None:
    """Open the step (and its run, first time) in one statement."""
    run_started = RunStarted(run_id=info.run_id, workflow=info.workflow, tags=dict(info.run_tags))
    ledger.statement(OPEN, {
        "run_id": info.run_id, "workflow": info.workflow, "run_tags": json.dumps(dict(info.run_tags)),
        "step_key": info.step_key, "attempt": info.attempt, "asset_key": scope.asset_key,
        "tags": json.dumps(dict(scope.tags)), "now": utcnow(),
        "b_scope": [s for s, _, _, _ in limits], "b_key": [k for _, k, _, _ in limits],
        "b_limit": [usd for _, _, usd, _ in limits], "b_on_breach": [b for _, _, _, b in limits],
        **outbox_params(record_event, [run_started, started]),
    })


def close_step(ledger: Ledger, record_event: EventRecorder, info: StepInfo, status: str, error: str | None,
               closed_event: EventData) -> bool:
    """Close the step's attempt in one statement; False (nothing written) if it has no row."""
    closed: bool = ledger.statement(CLOSE, {
        "run_id": info.run_id, "step_key": info.step_key, "attempt": info.attempt, "status": status,
        "error": error, "now": utcnow(), **outbox_params(record_event, [closed_event]),
    })[0][0]
    return closed
