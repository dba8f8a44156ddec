"""``wflo doctor``: check every configured service and say, one line each, what is wrong and the fix."""

from __future__ import annotations

import typer


def doctor() -> None:
    """Check the ledger, Redis, Kafka, the sandbox and the LLM setup; exit 1 if anything is wrong."""
    from rich.console import Console

    from wflo_core.config import load_settings
    from wflo_core.doctor import run_checks

    console = Console(highlight=False, soft_wrap=True)
    with console.status("checking services ..."):
        results = run_checks(load_settings())
    for r in results:
        mark = "[green]ok  [/]" if r.ok else "[red]FAIL[/]"
        console.print(
            f"{mark} {r.name:<8} {r.detail}" + ("" if r.ok else f" [bold]→ fix:[/] {r.fix}"), markup=True
        )
    failed = [r.name for r in results if not r.ok]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed: {', '.join(failed)}[/]")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/]")
