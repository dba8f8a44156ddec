"""Cost roll-ups read straight through the database driver (sqlite3, psycopg): what ``wflo costs`` runs.

The figures are :func:`wflo_core.ledger.rollups.cost_rollup`'s (a test holds the two together on both
backends), without SQLAlchemy: importing it and building the ORM models is most of what a CLI command
would spend before printing. The ledger is checked as ``open_ledger`` checks it: an embedded ledger
behind the head is migrated first (only then is Alembic imported), a server ledger is refused.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from wflo_core.config import WfloSettings
from wflo_core.ledger.revisions import SchemaState, migration_heads, refuse_unless_at_head, unreachable
from wflo_core.ledger.units import from_units, quantize_usd

if TYPE_CHECKING:
    import sqlite3

Dimension = Literal["run", "step", "workflow", "asset", "model", "provider", "tag", "day"]
DIMENSIONS: tuple[Dimension, ...] = ("run", "step", "workflow", "asset", "model", "provider", "tag", "day")

BILLED_STATUSES = ("settled", "over_bound", "estimated", "cache_hit")
"""``llm_calls`` statuses that count in roll-ups and budgets (a cache hit counts at $0, with its saving);
``models`` takes them from here, as this module needs no SQLAlchemy."""

_GROUP_SQL: dict[Dimension, str] = {
    "run": "c.run_id",
    "step": "COALESCE(c.step_key, '')",
    "workflow": "w.name",
    "asset": "COALESCE(c.asset_key, '')",
    "model": "c.model",
    "provider": "c.provider",
    "day": "SUBSTR(CAST(c.created_at AS VARCHAR), 1, 10)",
}
_TOTALS_SQL = (
    "COUNT(c.id), SUM(CASE WHEN c.status = 'cache_hit' THEN 1 ELSE 0 END), "
    "COALESCE(SUM(c.input_tokens), 0), COALESCE(SUM(c.output_tokens), 0), "
    "COALESCE(SUM(c.cost_usd), 0), COALESCE(SUM(c.saved_usd), 0), "
    "COALESCE(SUM(CASE WHEN c.status = 'estimated' THEN c.cost_usd ELSE 0 END), 0)"
)
_TAG_COLUMNS_SQL = "c.tags, c.status, c.input_tokens, c.output_tokens, c.cost_usd, c.saved_usd"
_BILLED_SQL = ", ".join(f"'{status}'" for status in BILLED_STATUSES)
_FROM_SQL = (
    "FROM llm_calls c JOIN runs r ON r.id = c.run_id JOIN workflows w ON w.id = r.workflow_id "
    f"WHERE c.status IN ({_BILLED_SQL})"
)


@dataclass(frozen=True, slots=True)
class RollupRow:
    key: str
    calls: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    saved_usd: Decimal
    estimated_usd: Decimal = Decimal(0)
    """The part of ``cost_usd`` charged at a call's bound because its billing is unknown."""


def by_cost(rows: Iterable[RollupRow]) -> list[RollupRow]:
    """Most expensive first, then by key."""
    return sorted(rows, key=lambda r: (-r.cost_usd, r.key))


def tag_rows(calls: Iterable[Sequence[Any]]) -> list[RollupRow]:
    """One row per ``key=value`` tag from ``(tags, status, input, output, cost, saved)`` per call."""
    acc: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0), Decimal(0), Decimal(0)])
    for tags, status, inp, out, cost, saved in calls:
        for k, v in (tags or {}).items():
            row = acc[f"{k}={v}"]
            row[0] += 1
            row[1] += status == "cache_hit"
            row[2] += inp
            row[3] += out
            row[4] += cost
            row[5] += saved
            row[6] += cost if status == "estimated" else Decimal(0)
    return by_cost(RollupRow(k, *v) for k, v in acc.items())


@dataclass(frozen=True, slots=True)
class _Driver:
    """What differs between the backends: placeholders, how money and JSON come back, how a time binds."""

    run: Callable[[str, list[Any]], list[tuple[Any, ...]]]
    mark: str
    usd: Callable[[Any], Decimal]
    tags: Callable[[Any], Any]
    since: Callable[[datetime], Any]


def read_rollup(settings: WfloSettings, by: Dimension, *, run_id: str | None = None,
                workflow: str | None = None, since: datetime | None = None) -> list[RollupRow]:
    """``cost_rollup`` over ``settings``' ledger: billed attempts only, most expensive first."""
    url = settings.ledger_url
    if url.startswith("postgresql"):
        return _postgres_rollup(url, by, run_id, workflow, since)
    return _sqlite_rollup(settings, by, run_id, workflow, since)


def _query(driver: _Driver, by: Dimension, run_id: str | None, workflow: str | None,
           since: datetime | None) -> list[RollupRow]:
    sql, params = _FROM_SQL, []
    for column, value in (("c.run_id", run_id), ("w.name", workflow)):
        if value:
            sql += f" AND {column} = {driver.mark}"
            params.append(value)
    if since:
        sql += f" AND c.created_at >= {driver.mark}"
        params.append(driver.since(since))
    if by == "tag":
        calls = driver.run(f"SELECT {_TAG_COLUMNS_SQL} {sql}", params)
        return tag_rows((driver.tags(t), s, i, o, driver.usd(c), driver.usd(v)) for t, s, i, o, c, v in calls)
    rows = driver.run(f"SELECT {_GROUP_SQL[by]} AS key, {_TOTALS_SQL} {sql} GROUP BY 1", params)
    return by_cost(RollupRow(str(k), n, int(h or 0), int(i), int(o), driver.usd(c), driver.usd(s), driver.usd(e))
                   for k, n, h, i, o, c, s, e in rows)


def _sqlite_rollup(settings: WfloSettings, by: Dimension, run_id: str | None, workflow: str | None,
                   since: datetime | None) -> list[RollupRow]:
    import sqlite3

    url = settings.ledger_url
    path = (url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else "") or ":memory:"
    if path != ":memory:":  # as make_engine does; the file itself sqlite creates
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = _sqlite_state(path, url)
    if settings.is_embedded and not state.at_head:
        from wflo_core.ledger.migrations import upgrade

        upgrade(url)
        state = _sqlite_state(path, url)
    refuse_unless_at_head(state, url)
    try:
        with closing(sqlite3.connect(path, timeout=60)) as conn:
            driver = _Driver(lambda sql, params: conn.execute(sql, params).fetchall(), "?", from_units,
                             lambda tags: None if tags is None else json.loads(tags), _sqlite_datetime)
            return _query(driver, by, run_id, workflow, since)
    except sqlite3.Error as err:
        raise unreachable(url, err) from None


def _sqlite_state(path: str, url: str) -> SchemaState:
    import sqlite3

    try:
        with closing(sqlite3.connect(path, timeout=60)) as conn:
            return SchemaState(_sqlite_revision(conn), migration_heads())
    except sqlite3.Error as err:
        raise unreachable(url, err) from None


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone():
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])
    return None


def _sqlite_datetime(value: datetime) -> str:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it (and so compares it): no time zone."""
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _postgres_rollup(url: str, by: Dimension, run_id: str | None, workflow: str | None,
                     since: datetime | None) -> list[RollupRow]:
    import psycopg

    try:  # the SQLAlchemy URL minus its driver name is a libpq URI
        conn = psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)
    except psycopg.Error as err:
        raise unreachable(url, err) from None
    with conn:
        try:
            exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone() if exists and exists[0] else None
        except psycopg.Error as err:
            raise unreachable(url, err) from None
        refuse_unless_at_head(SchemaState(None if row is None else str(row[0]), migration_heads()), url)
        driver = _Driver(lambda sql, params: conn.execute(sql, params).fetchall(), "%s",
                         lambda value: quantize_usd(Decimal(value)), lambda tags: tags, lambda value: value)
        try:
            return _query(driver, by, run_id, workflow, since)
        except psycopg.Error as err:
            raise unreachable(url, err) from None
