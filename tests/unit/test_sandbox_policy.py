"""Limits, results and ledger records of sandbox runs (no backend needed)."""

from __future__ import annotations

import pytest

from wflo_core.errors import ConfigError
from wflo_core.sandbox import KilledReason, SandboxLimits, SandboxResult, extract_code, result_metadata
from wflo_core.sandbox.result import EXCERPT_CHARS


def test_limits_reject_values_that_cannot_work() -> None:
    with pytest.raises(ConfigError, match="must be positive.*timeout_seconds=0"):
        SandboxLimits(timeout_seconds=0)
    with pytest.raises(ConfigError, match="pids=2 is too small"):
        SandboxLimits(pids=2)
    with pytest.raises(ConfigError, match="below 16 MiB"):
        SandboxLimits(memory_bytes=1024)


def test_cpu_limit_defaults_to_the_timeout_rounded_up() -> None:
    assert SandboxLimits(timeout_seconds=2.2).effective_cpu_seconds == 3
    assert SandboxLimits(timeout_seconds=0.1).effective_cpu_seconds == 1
    assert SandboxLimits(timeout_seconds=30, cpu_seconds=5).effective_cpu_seconds == 5
    assert SandboxLimits(timeout_seconds=9).with_timeout(4).to_dict()["cpu_seconds"] == 4
    limits = SandboxLimits()
    assert limits.with_timeout(None) is limits


def test_record_has_every_ledger_column_with_excerpts() -> None:
    noisy = ("a" * 5000 + "THE ERROR").encode()
    result = SandboxResult(
        backend="docker",
        exit_code=137,
        stdout=b"out\x00put",
        stderr=noisy,
        stderr_truncated=True,
        wall_ms=1500,
        cpu_ms=1400,
        peak_memory_bytes=2**20,
        killed_reason=KilledReason.MEMORY,
        limits=SandboxLimits(timeout_seconds=10),
    )
    record = result.to_record()
    assert set(record) == {
        "backend",
        "exit_code",
        "killed_reason",
        "wall_ms",
        "cpu_ms",
        "peak_memory_bytes",
        "stdout_excerpt",
        "stderr_excerpt",
        "stdout_truncated",
        "stderr_truncated",
        "limits",
    }
    assert record["killed_reason"] == "memory" and record["exit_code"] == 137
    assert record["stdout_excerpt"] == "out\ufffdput"  # no NUL: Postgres text cannot hold it
    assert (
        record["stderr_excerpt"].endswith("THE ERROR") and len(record["stderr_excerpt"]) < EXCERPT_CHARS + 80
    )
    assert record["limits"]["timeout_seconds"] == 10 and record["limits"]["cpu_seconds"] == 10
    assert not result.ok
    metadata = result_metadata(result)
    assert metadata["wflo/sandbox_killed_reason"] == "memory" and metadata["wflo/sandbox_output_truncated"]


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("print(1)", "print(1)"),
        ("Here:\n```python\nprint(2)\n```\nDone.", "print(2)\n"),
        ("```\nprint(3)\n```", "print(3)\n"),
        ("```bash\nls\n```\nand\n```py\nprint(4)\n```", "print(4)\n"),
        ("```bash\nls\n```", "ls\n"),
    ],
)
def test_extract_code_finds_the_program_in_an_llm_reply(reply: str, code: str) -> None:
    assert extract_code(reply) == code


def test_record_fits_the_sandbox_runs_ledger_table() -> None:
    from wflo_core.ledger.models import SandboxRun

    record = SandboxResult(backend="process", exit_code=0, stdout=b"", stderr=b"").to_record()
    columns = SandboxRun.__table__.columns
    assert set(record) <= set(columns.keys())
    assert all(len(reason.value) <= columns["killed_reason"].type.length for reason in KilledReason)
