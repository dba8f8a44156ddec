"""The ``wflo`` command line. Each command group lives in its own module and is registered here."""

from __future__ import annotations

import sys

import typer

from wflo_core.errors import WfloError

app = typer.Typer(
    name="wflo",
    help="Run AI-agent pipelines on Dagster safely, with every cent accounted for.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def load_commands() -> typer.Typer:
    """Import every command module (each registers itself on ``app``) and return the app."""
    from wflo_dagster.cli import (  # noqa: F401  (registers commands)  # noqa: F401
        approvals,
        budgets,
        costs,
        db,
        demo,
        doctor,
        estimate,  # noqa: F401
        events,
        runs,
        sandbox,  # noqa: F401
    )

    return app


def main() -> None:
    """Console entry point: user mistakes become one red line and exit code 1, never a traceback."""
    load_commands()
    try:
        app(standalone_mode=True)
    except WfloError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(1)
