"""The ``wflo`` command line. Every command is registered here, explicitly, from its own module.

Start time matters (``wflo --help`` runs in well under a second): a command module imports only
typer at the top and whatever its command needs inside the command, so no command pays for the
LLM SDKs, Dagster or the Docker SDK unless it uses them. Help is click's plain text: typer's rich help
would import rich, markdown-it and pygments just to print it. ``tests/unit/test_cli_commands.py`` pins it.
"""

from __future__ import annotations

import sys

import typer

from wflo_core.errors import WfloError
from wflo_dagster.cli import approvals, budgets, costs, db, demo, doctor, estimate, events, runs, sandbox

app = typer.Typer(
    name="wflo",
    help="Run AI-agent pipelines on Dagster safely, with every cent accounted for.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.command("costs")(costs.costs)
app.add_typer(budgets.app, name="budgets")
app.add_typer(approvals.app, name="approvals")
app.add_typer(runs.app, name="runs")
app.add_typer(events.app, name="events")
app.command("estimate")(estimate.estimate_job)
app.command("demo")(demo.demo)
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(db.app, name="db")
app.command("doctor")(doctor.doctor)


def main() -> None:
    """Console entry point: user mistakes become one red line and exit code 1, never a traceback."""
    try:
        app(standalone_mode=True)
    except WfloError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(1)
