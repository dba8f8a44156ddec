"""Opening the ledger from a command: reachable, migrated to head, or one line saying how to fix it."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import SQLAlchemyError

from wflo_core.config import WfloSettings, redact_url
from wflo_core.errors import ConfigError
from wflo_core.ledger.engine import make_engine
from wflo_core.ledger.migrations import heads, upgrade
from wflo_core.ledger.store import Ledger


def current_revision(url: str) -> str | None:
    """The ledger's Alembic revision (None = never migrated); ``ConfigError`` if it cannot be reached."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise ConfigError(
            f"ledger at {redact_url(url)} is unreachable ({reason}); check WFLO_DATABASE_URL and that "
            f"the database server is running",
            reason=reason,
        ) from None
    finally:
        engine.dispose()


def ensure_migrated(url: str) -> None:
    """``ConfigError`` naming the fix unless the ledger schema is at the head revision."""
    revision, head = current_revision(url), heads(url)
    if revision not in head:
        raise ConfigError(
            f"ledger at {redact_url(url)} is at revision {revision or 'none (empty database)'}, "
            f"expected {', '.join(head)}; run `wflo db upgrade`"
        )


def open_ledger(settings: WfloSettings) -> Ledger:
    """Embedded SQLite is created on first use (as the pipelines do); a server ledger must be migrated."""
    if settings.is_embedded:
        upgrade(settings.ledger_url)
    else:
        ensure_migrated(settings.ledger_url)
    return Ledger(settings.ledger_url)
