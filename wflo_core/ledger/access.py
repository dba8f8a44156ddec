"""The one checked way to open the ledger: reachable, at the schema head, or one line naming the fix.

The embedded SQLite ledger is created and migrated on first use (as the pipelines do); a server
ledger is never migrated behind the operator's back: ``wflo db upgrade`` does that.

Every CLI command pays for this check, so it is cheap: it reads ``alembic_version`` with one query on
the ledger's own engine (no second engine, no second connection) and finds the heads from the
``revision`` / ``down_revision`` lines of the revision files, without importing Alembic (half a
second) or parsing whole migrations.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from wflo_core.config import WfloSettings, redact_url
from wflo_core.errors import ConfigError
from wflo_core.ledger.engine import make_engine
from wflo_core.ledger.store import Ledger

_VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
"""``revision = '0002'`` / ``down_revision: str | None = '0001'``, as Alembic's templates write them."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a ledger's schema is (``revision`` None = never migrated) against the code's heads."""

    revision: str | None
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return self.revision in self.heads


def schema_state(url: str) -> SchemaState:
    """The ledger's Alembic revision and the heads; ``ConfigError`` (with ``reason``) if unreachable."""
    engine = make_engine(url, pool_size=1)
    try:
        return _state_of(engine, url)
    finally:
        engine.dispose()


def _state_of(engine: Engine, url: str) -> SchemaState:
    try:
        with engine.connect() as conn:
            revision = _current_revision(conn)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise ConfigError(
            f"ledger at {redact_url(url)} is unreachable ({reason}); check WFLO_DATABASE_URL and that "
            f"the database server is running",
            reason=reason,
        ) from None
    return SchemaState(revision, migration_heads())


def _current_revision(conn: Connection) -> str | None:
    """``alembic_version``'s row, None when the table does not exist yet (a fresh database)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError):  # dropped between the two statements
        return None


@functools.cache
def migration_heads() -> tuple[str, ...]:
    """Revisions no other revision builds on, read from the files Alembic's template writes."""
    revisions: dict[str, tuple[str, ...]] = {}
    for path in _VERSIONS.glob("*.py"):
        fields = {name: ast.literal_eval(value) for name, value in _REVISION_LINE.findall(path.read_text())}
        down = fields.get("down_revision")
        revisions[str(fields["revision"])] = tuple(down) if isinstance(down, tuple | list) else (
            (str(down),) if down else ()
        )
    parents = {parent for downs in revisions.values() for parent in downs}
    return tuple(sorted(set(revisions) - parents))


def ensure_migrated(url: str) -> None:
    """``ConfigError`` naming the fix unless the ledger schema is at the head revision."""
    _refuse_unless_at_head(schema_state(url), url)


def _refuse_unless_at_head(state: SchemaState, url: str) -> None:
    if not state.at_head:
        raise ConfigError(
            f"ledger at {redact_url(url)} is at revision {state.revision or 'none (empty database)'}, "
            f"expected {', '.join(state.heads)}; run `wflo db upgrade`"
        )


def open_ledger(settings: WfloSettings) -> Ledger:
    """The ledger of ``settings``, checked; use it as ``with open_ledger(settings) as ledger:``."""
    url = settings.ledger_url
    ledger = Ledger(url)
    try:
        state = _state_of(ledger.engine, url)  # checked over the ledger's own engine: one connection
        if settings.is_embedded and not state.at_head:
            from wflo_core.ledger.migrations import upgrade

            upgrade(url)
        elif not settings.is_embedded:
            _refuse_unless_at_head(state, url)
    except BaseException:
        ledger.close()
        raise
    return ledger
