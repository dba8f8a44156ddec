"""``wflo costs`` before anything ran, and with a ledger that cannot be reached."""

from __future__ import annotations

from tests.services import free_port
from tests.unit.cli_support import run_wflo as wflo


def test_costs_on_a_fresh_home_is_empty_not_an_error(capsys, monkeypatch) -> None:
    assert wflo(capsys, monkeypatch, "costs", "--format", "json") == (0, "[]\n", "")


def test_costs_with_an_unreachable_ledger_is_one_line_without_the_password(capsys, monkeypatch) -> None:
    monkeypatch.setenv("WFLO_DATABASE_URL", f"postgresql://wflo:Pw-S3cret@127.0.0.1:{free_port()}/wflo")
    code, out, err = wflo(capsys, monkeypatch, "costs")
    assert code == 1 and out == ""
    assert (
        err.startswith("error: ledger at postgresql+psycopg://wflo:***@127.0.0.1:") and "unreachable" in err
    )
    assert len(err.strip().splitlines()) == 1 and "Pw-S3cret" not in err
