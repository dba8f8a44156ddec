"""What sandboxed code may consume: one value object shared by every backend.

Defaults are deliberately small (a script that parses some files and prints JSON fits easily);
callers raise them per run. Every limit is enforced by each backend as far as its kernel
mechanisms allow; ``ProcessSandbox`` documents the cases where it can only approximate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from wflo_core.errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """Resource limits for one sandboxed run."""

    timeout_seconds: float = 30.0
    """Wall clock from start to kill; the one limit no code can dodge."""
    cpu_seconds: int | None = None
    """CPU time per process (RLIMIT_CPU, ends the process with SIGXCPU); None = ``timeout_seconds``."""
    cpus: float = 1.0
    """Share of CPU cores (CFS quota), e.g. 0.5 = half a core."""
    memory_bytes: int = 256 * MiB
    """Memory of the whole run (all its processes); going over is an OOM kill."""
    pids: int = 64
    """Maximum number of processes and threads at once (stops fork bombs)."""
    workdir_bytes: int = 64 * MiB
    """Size of the writable work dir (a tmpfs); writes beyond it fail with ENOSPC."""
    max_output_bytes: int = 1 * MiB
    """Per stream (stdout, stderr) kept; more output truncates the stream and kills the run."""
    max_files_out_bytes: int = 16 * MiB
    """Total size of files copied back out of the work dir; files beyond it are left out."""

    def __post_init__(self) -> None:
        positive = {k: v for k, v in asdict(self).items() if v is not None}
        bad = [f"{k}={v!r}" for k, v in positive.items() if not v > 0]
        if bad:
            raise ConfigError(f"sandbox limits must be positive, got {', '.join(bad)}; use e.g. pids=64")
        if self.pids < 4:
            raise ConfigError(f"sandbox limit pids={self.pids} is too small to start Python; use at least 4")
        if self.memory_bytes < 16 * MiB:
            raise ConfigError(
                f"sandbox limit memory_bytes={self.memory_bytes} is below 16 MiB, too small to start "
                "Python; use e.g. 256 * 1024 * 1024"
            )

    @property
    def effective_cpu_seconds(self) -> int:
        """The RLIMIT_CPU actually applied: at least 1 s, by default the timeout rounded up."""
        if self.cpu_seconds is not None:
            return self.cpu_seconds
        return max(1, int(self.timeout_seconds + 0.999))

    def with_timeout(self, timeout_seconds: float | None) -> SandboxLimits:
        return self if timeout_seconds is None else replace(self, timeout_seconds=timeout_seconds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``limits`` column of a sandbox_runs ledger row)."""
        return {**asdict(self), "cpu_seconds": self.effective_cpu_seconds}
