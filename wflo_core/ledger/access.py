"""The one checked way to open the ledger: reachable, at the schema head, or one line naming the fix.

The embedded SQLite ledger is created and migrated on first use (as the pipelines do); a server
ledger is never migrated behind the operator's back: ``wflo db upgrade`` does that.

Every CLI command pays for this check, so it is cheap: it reads ``alembic_version`` with one query on
the ledger's own engine (no second engine, no second connection) and takes the heads from
``revisions``, without importing Alembic.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from wflo_core.config import WfloSettings
from wflo_core.ledger.engine import make_engine
from wflo_core.ledger.revisions import SchemaState, migration_heads, refuse_unless_at_head, unreachable
from wflo_core.ledger.store import Ledger


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
        raise unreachable(url, getattr(err, "orig", None) or err) from None
    return SchemaState(revision, migration_heads())


def _current_revision(conn: Connection) -> str | None:
    """``alembic_version``'s row, None when the table does not exist yet (a fresh database)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError):  # dropped between the two statements
        return None


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
            refuse_unless_at_head(state, url)
    except BaseException:
        ledger.close()
        raise
    return ledger
