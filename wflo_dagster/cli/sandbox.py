"""``wflo sandbox``: run a file of code in the configured sandbox from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(help="Run untrusted code in the sandbox.", no_args_is_help=True)


@app.command("run")
def run(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Program to run.")],
    backend: Annotated[
        str | None, typer.Option(help="docker or process; default: WFLO_SANDBOX_BACKEND.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Wall-clock limit in seconds.")] = 30.0,
    language: Annotated[str, typer.Option(help="Language of FILE (python, bash).")] = "python",
    input_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--input", "-i", exists=True, dir_okay=False, help="File for the work dir (repeatable)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole result as one JSON object.")
    ] = False,
) -> None:
    """Run FILE in the sandbox; print its stdout/stderr and exit with its exit code."""
    import json
    import sys

    from wflo_core.errors import ConfigError
    from wflo_core.sandbox import open_sandbox

    if backend not in (None, "docker", "process"):
        raise ConfigError(f"--backend must be docker or process, not {backend!r}")
    chosen: Literal["docker", "process"] | None = backend  # type: ignore[assignment]
    files = {path.name: path.read_bytes() for path in input_file or []}
    with open_sandbox(backend=chosen) as sandbox:
        result = sandbox.run(file.read_text(), files_in=files, timeout=timeout, language=language)
    if as_json:
        record = result.to_record()
        record["files_out"] = sorted(result.files_out)
        typer.echo(json.dumps(record, indent=2))
    else:
        sys.stdout.write(result.stdout_text)
        sys.stderr.write(result.stderr_text)
        summary = f"[{result.backend}] exit {result.exit_code} in {result.wall_ms} ms"
        if result.killed_reason:
            summary += f", killed: {result.killed_reason.value}"
        if result.stdout_truncated or result.stderr_truncated:
            summary += ", output truncated"
        typer.secho(summary, fg=typer.colors.YELLOW if not result.ok else typer.colors.GREEN, err=True)
    raise typer.Exit(result.exit_code if result.exit_code is not None else 1)
