"""The outcome of one sandboxed run, identical for every backend."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from wflo_core.sandbox.policy import SandboxLimits

Backend = Literal["docker", "process"]

#: Characters of stdout/stderr kept in a ledger row or in Dagster metadata.
EXCERPT_CHARS = 2000


class KilledReason(enum.StrEnum):
    """Why the sandbox ended the code instead of the code ending by itself."""

    TIMEOUT = "timeout"
    """The wall-clock limit passed."""
    CPU = "cpu"
    """A process used up its CPU-time limit (SIGXCPU)."""
    MEMORY = "memory"
    """The run went over its memory limit and was OOM-killed."""
    OUTPUT_LIMIT = "output_limit"
    """stdout or stderr went over ``max_output_bytes``."""
    CONTAINER_DIED = "container_died"
    """The container ended under the code for another reason (gVisor stops the whole sandbox when
    the pids limit is hit; a container reaching its own deadline)."""


@dataclass(frozen=True, kw_only=True)
class SandboxResult:
    """Exit status, separate capped outputs, files written, and resource use of one run."""

    backend: Backend
    exit_code: int | None
    """The process's exit status; ``128 + n`` when it was killed by signal ``n``; None if unknown."""
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    files_out: dict[str, bytes] = field(default_factory=dict)
    """Regular files left in the work dir (relative path -> content), input files included; also
    after a kill, unless the work dir was gone with its container."""
    files_out_truncated: bool = False
    """Some files were left out because their total size went over ``max_files_out_bytes``."""
    wall_ms: int = 0
    cpu_ms: int | None = None
    peak_memory_bytes: int | None = None
    killed_reason: KilledReason | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)

    @property
    def ok(self) -> bool:
        """The code exited by itself with status 0."""
        return self.exit_code == 0 and self.killed_reason is None

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")

    def to_record(self) -> dict[str, Any]:
        """The fields of a ``sandbox_runs`` ledger row (the caller adds run_id and step_key)."""
        return {
            "backend": self.backend,
            "exit_code": self.exit_code,
            "killed_reason": self.killed_reason.value if self.killed_reason else None,
            "wall_ms": self.wall_ms,
            "cpu_ms": self.cpu_ms,
            "peak_memory_bytes": self.peak_memory_bytes,
            "stdout_excerpt": excerpt(self.stdout_text),
            "stderr_excerpt": excerpt(self.stderr_text),
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "limits": self.limits.to_dict(),
        }


def excerpt(text: str) -> str:
    """The head and tail of ``text`` (errors are usually at the end), NUL-free for Postgres."""
    text = text.replace("\x00", "\ufffd")
    if len(text) <= EXCERPT_CHARS:
        return text
    half = EXCERPT_CHARS // 2
    return f"{text[:half]}\n... [{len(text) - EXCERPT_CHARS} characters omitted] ...\n{text[-half:]}"
