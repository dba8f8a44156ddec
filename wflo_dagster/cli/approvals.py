"""``wflo approvals``: list, show and decide approval requests (every decision audited in the ledger)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from wflo_core.approvals import ApprovalBook, ApprovalView

app = typer.Typer(help="Human approval gates: see what waits, approve or reject it.", no_args_is_help=True)


@contextmanager
def approval_book() -> Iterator[ApprovalBook]:
    from wflo_core.approvals import ApprovalBook
    from wflo_core.config import load_settings
    from wflo_core.ledger import open_ledger

    with open_ledger(load_settings()) as ledger:
        yield ApprovalBook(ledger)


def as_json(view: ApprovalView) -> dict[str, Any]:
    return {
        "id": view.id,
        "run_id": view.run_id,
        "step_key": view.step_key,
        "kind": view.kind,
        "status": view.status,
        "reason": view.reason,
        "context": view.context,
        "approvers": view.approvers,
        "timeout_policy": view.timeout_policy,
        "requested_at": view.requested_at.isoformat(),
        "expires_at": view.expires_at.isoformat() if view.expires_at else None,
        "decided_by": view.decided_by,
        "decided_at": view.decided_at.isoformat() if view.decided_at else None,
        "decision_reason": view.decision_reason,
        "continuation_run_id": view.continuation_run_id,
    }


@app.command("list")
def list_approvals(
    status: str | None = typer.Option(None, help="pending, escalated, approved, rejected or expired."),
    run: str | None = typer.Option(None, "--run", help="Only requests of this run id."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Approval requests, newest first."""
    import json

    from wflo_core.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format must be table or json, got {fmt!r}")
    with approval_book() as book:
        views = book.list(status=status, run_id=run)
    if fmt == "json":
        typer.echo(json.dumps([as_json(v) for v in views], indent=2))
        return
    if not views:
        typer.echo("no approval requests" + (f" with status {status}" if status else "")
                   + (f" in run {run}" if run else ""))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="approval requests")
    for column in ("id", "status", "run", "step", "reason", "requested", "decided by"):
        table.add_column(column)
    for v in views:
        table.add_row(v.id, v.status, v.run_id[:8], v.step_key, v.reason[:60],
                      f"{v.requested_at:%Y-%m-%d %H:%M}", v.decided_by or "-")
    Console(width=160).print(table)


@app.command("show")
def show(approval_id: str = typer.Argument(..., help="The request's id (apr-...).")) -> None:
    """Everything about one request: its context for the reviewer and the decision, if any."""
    import json

    with approval_book() as book:
        typer.echo(json.dumps(as_json(book.get(approval_id)), indent=2))


def _decide(approval_id: str, decision: str, by: str, reason: str) -> None:
    with approval_book() as book:
        view = book.decide(approval_id, decision, by=by, reason=reason)  # type: ignore[arg-type]
    typer.echo(f"approval {view.id} {view.status} by {view.decided_by}: {view.decision_reason}")
    if view.status == "approved":
        typer.echo(f"run {view.run_id} continues in a new run launched by the wflo_approvals sensor")


@app.command("approve")
def approve(
    approval_id: str = typer.Argument(..., help="The request's id (apr-...)."),
    by: str = typer.Option(..., "--by", help="Who approves (recorded in the audit trail)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit trail)."),
) -> None:
    """Approve a request; the stopped run continues in a new run."""
    _decide(approval_id, "approved", by, reason)


@app.command("reject")
def reject(
    approval_id: str = typer.Argument(..., help="The request's id (apr-...)."),
    by: str = typer.Option(..., "--by", help="Who rejects (recorded in the audit trail)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit trail)."),
) -> None:
    """Reject a request; the stopped run ends canceled with your reason."""
    _decide(approval_id, "rejected", by, reason)
