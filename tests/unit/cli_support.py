"""Running the ``wflo`` console entry point in-process, as a user would, for CLI tests."""

from __future__ import annotations

import sys

import pytest

from wflo_dagster.cli import main


def run_wflo(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """``wflo ARGS...`` through ``main()``: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["wflo", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err
