"""Running code an LLM wrote: pull the program out of the reply, run it, describe the outcome.

This is the plain function behind the Dagster sandbox step; the step adds the ledger row
(:meth:`SandboxResult.to_record`) and the event, and attaches :func:`result_metadata`.
"""

from __future__ import annotations

import re

from wflo_core.sandbox.base import Sandbox
from wflo_core.sandbox.files import FilesIn
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import SandboxResult, excerpt

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(reply: str, language: str = "python") -> str:
    """The program in an LLM reply: the first fenced block in ``language`` (or untagged), else all of it."""
    blocks: list[tuple[str, str]] = _FENCE.findall(reply)  # two groups: the tag and the body
    for tag, body in blocks:
        if tag.lower() in (language, "py" if language == "python" else language, ""):
            return body
    return blocks[0][1] if blocks else reply


def run_sandboxed(
    sandbox: Sandbox,
    code: str,
    *,
    files_in: FilesIn | None = None,
    timeout: float | None = None,
    limits: SandboxLimits | None = None,
    language: str = "python",
) -> SandboxResult:
    """Run the program found in ``code`` (an LLM reply or plain source) in ``sandbox``."""
    return sandbox.run(
        extract_code(code, language), files_in=files_in, timeout=timeout, limits=limits, language=language
    )


def result_metadata(result: SandboxResult) -> dict[str, str | int | bool | None]:
    """Flat values for step metadata: status, limits hit, resource use, output excerpts."""
    return {
        "wflo/sandbox_backend": result.backend,
        "wflo/sandbox_exit_code": result.exit_code,
        "wflo/sandbox_killed_reason": result.killed_reason.value if result.killed_reason else None,
        "wflo/sandbox_wall_ms": result.wall_ms,
        "wflo/sandbox_cpu_ms": result.cpu_ms,
        "wflo/sandbox_peak_memory_bytes": result.peak_memory_bytes,
        "wflo/sandbox_stdout": excerpt(result.stdout_text),
        "wflo/sandbox_stderr": excerpt(result.stderr_text),
        "wflo/sandbox_output_truncated": result.stdout_truncated or result.stderr_truncated,
        "wflo/sandbox_files_out": len(result.files_out),
    }
