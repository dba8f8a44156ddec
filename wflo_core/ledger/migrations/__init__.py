"""Alembic migrations shipped inside the package, driven programmatically (``wflo db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

from wflo_core.ledger.engine import make_engine

_HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the ledger to ``revision``. A new embedded (SQLite) ledger is built straight at the head
    from the models and stamped (Alembic's recipe for a database built from scratch): replaying every
    migration, table copies included, cost seconds on each fresh ``WFLO_HOME``."""
    if url.startswith("sqlite"):
        engine = make_engine(url)  # creates the parent directory of the SQLite file
        try:
            if revision == "head" and _create_at_head_if_empty(engine, alembic_config(url)):
                return
        finally:
            engine.dispose()
    command.upgrade(alembic_config(url), revision)


def _create_at_head_if_empty(engine: Engine, config: Config) -> bool:
    """Create every table and stamp the head if the database has no table yet; whether it did. One
    transaction (``BEGIN IMMEDIATE``), so concurrent first steps create it once."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from wflo_core.ledger.models import Base

    with engine.begin() as connection:
        if inspect(connection).get_table_names():
            return False
        Base.metadata.create_all(connection)
        MigrationContext.configure(connection).stamp(ScriptDirectory.from_config(config), "head")
        return True


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def heads(url: str = "sqlite://") -> list[str]:
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config(url)).get_heads())
