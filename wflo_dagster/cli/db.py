"""``wflo db``: ledger schema management."""

from __future__ import annotations

import typer

app = typer.Typer(help="Ledger database schema (Alembic migrations).", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply ledger migrations up to REVISION (default: head)."""
    from wflo_core.config import load_settings, redact_url
    from wflo_core.ledger.migrations import upgrade as run_upgrade

    settings = load_settings()
    run_upgrade(settings.ledger_url, revision)
    typer.echo(f"ledger at {redact_url(settings.ledger_url)} is at {revision}")
