"""The one checked way to open the ledger: reachable, at the schema head, or one line naming the fix.

The embedded SQLite ledger is created and migrated on first use (as the pipelines do); a server
ledger is never migrated behind the operator's back: ``wflo db upgrade`` does that.

The check reads ``alembic_version`` with one query and finds the heads by parsing the revision
files, without importing Alembic (half a second): every CLI command pays for this check.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from wflo_core.config import WfloSettings, redact_url
from wflo_core.errors import ConfigError
from wflo_core.ledger.engine import make_engine
from wflo_core.ledger.store import Ledger

_VERSIONS = Path(__file__).parent / "migrations" / "versions"


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
        with engine.connect() as conn:
            revision = _current_revision(conn)
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise ConfigError(
            f"ledger at {redact_url(url)} is unreachable ({reason}); check WFLO_DATABASE_URL and that "
            f"the database server is running",
            reason=reason,
        ) from None
    finally:
        engine.dispose()
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
        fields: dict[str, object] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                        fields[target.id] = ast.literal_eval(node.value)
        down = fields.get("down_revision")
        revisions[str(fields["revision"])] = tuple(down) if isinstance(down, tuple | list) else (
            (str(down),) if down else ()
        )
    parents = {parent for downs in revisions.values() for parent in downs}
    return tuple(sorted(set(revisions) - parents))


def ensure_migrated(url: str) -> None:
    """``ConfigError`` naming the fix unless the ledger schema is at the head revision."""
    state = schema_state(url)
    if not state.at_head:
        raise ConfigError(
            f"ledger at {redact_url(url)} is at revision {state.revision or 'none (empty database)'}, "
            f"expected {', '.join(state.heads)}; run `wflo db upgrade`"
        )


def open_ledger(settings: WfloSettings) -> Ledger:
    """The ledger of ``settings``, checked; use it as ``with open_ledger(settings) as ledger:``."""
    if settings.is_embedded:
        if not schema_state(settings.ledger_url).at_head:
            from wflo_core.ledger.migrations import upgrade

            upgrade(settings.ledger_url)
    else:
        ensure_migrated(settings.ledger_url)
    return Ledger(settings.ledger_url)
