"""``mypy --strict wflo_core`` stays clean (configured in pyproject's [tool.mypy]), so CI catches a type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wflo_core_passes_mypy_strict() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "wflo_core"], cwd=ROOT,
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, f"mypy --strict wflo_core failed:\n{result.stdout}{result.stderr}"
