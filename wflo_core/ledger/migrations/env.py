"""Alembic environment: the URL comes from the caller (settings), the target is the ledger models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from wflo_core.errors import ConfigError
from wflo_core.ledger.engine import make_engine
from wflo_core.ledger.models import Base

config = context.config
url: str | None = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
elif url is None:
    raise ConfigError("no ledger URL for the migrations: run them with `wflo db upgrade`, which passes it")
else:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()
