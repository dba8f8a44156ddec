"""``wflo costs`` before anything ran, and with a ledger that cannot be reached or read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.costs_support import expected, wflo_costs
from tests.services import free_port
from tests.unit.cli_support import run_wflo as wflo
from wflo_core.config import load_settings
from wflo_core.errors import ConfigError
from wflo_core.ledger import open_ledger
from wflo_core.ledger.access import schema_state
from wflo_dagster.cli.costs import FORMATS


def test_costs_on_a_fresh_home_is_empty_not_an_error(capsys, monkeypatch) -> None:
    assert wflo(capsys, monkeypatch, "costs", "--format", "json") == (0, "[]\n", "")


@pytest.mark.parametrize("fmt", FORMATS)
def test_costs_on_a_new_home_creates_the_ledger_and_prints_it_empty(fmt: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WFLO_HOME", str(tmp_path / f"home-{fmt}"))
    done, _ = wflo_costs("--format", fmt)
    assert (done.returncode, done.stderr) == (0, "")
    url = load_settings().ledger_url
    assert schema_state(url).at_head, "the first command on a home migrates its ledger"
    assert done.stdout == expected(url, fmt, "model") and "total" in expected(url, "table", "model")


@pytest.mark.parametrize("ledger", ["not a database", "an unmigrated server ledger"])
def test_costs_fails_on_a_bad_ledger_as_open_ledger_does(ledger: str, capsys, monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    if ledger == "not a database":
        monkeypatch.setenv("WFLO_HOME", str(tmp_path))
        path.write_bytes(b"this is no SQLite file, " * 100)
    else:  # any non-embedded URL is checked, never migrated; an empty SQLite file stands in for a server
        monkeypatch.setenv("WFLO_DATABASE_URL", f"sqlite:///{path}")
    with pytest.raises(ConfigError) as refused:
        open_ledger(load_settings())
    assert wflo(capsys, monkeypatch, "costs") == (1, "", f"error: {refused.value}\n")


def test_costs_with_an_unreachable_ledger_is_one_line_without_the_password(capsys, monkeypatch) -> None:
    monkeypatch.setenv("WFLO_DATABASE_URL", f"postgresql://wflo:Pw-S3cret@127.0.0.1:{free_port()}/wflo")
    code, out, err = wflo(capsys, monkeypatch, "costs")
    assert code == 1 and out == ""
    assert (
        err.startswith("error: ledger at postgresql+psycopg://wflo:***@127.0.0.1:") and "unreachable" in err
    )
    assert len(err.strip().splitlines()) == 1 and "Pw-S3cret" not in err


def test_costs_separate_estimated_from_settled_cost() -> None:
    """A stream abandoned before its usage is charged at its bound; `wflo costs` shows it apart."""
    import json
    from decimal import Decimal

    from typer.testing import CliRunner

    from wflo_core.budgets import CallScope
    from wflo_core.calls import LLMRequest
    from wflo_core.config import load_settings
    from wflo_core.services import shared_services
    from wflo_dagster.cli import app
    from wflo_dagster.pipelines import triage_agent

    provider, model = triage_agent.TRIAGE_MODEL
    tickets = triage_agent.inbox_for("2026-11-24")
    scope = CallScope(run_id="r-est", workflow="wf")
    with shared_services(load_settings(cache_mode="never")) as services:
        def request(i: int) -> LLMRequest:
            return LLMRequest(provider=provider, model=model, messages=tuple(triage_agent.triage_messages(tickets[i])),
                              max_tokens=120, temperature=0.0)

        stream = services.gateway.stream(request(0), scope, "est-1")
        next(stream)
        stream.close()
        _, settled = services.gateway.complete(request(1), scope, "set-1")
    result = CliRunner().invoke(app, ["costs", "--by", "run", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert Decimal(row["settled_usd"]) == settled.cost_usd > 0
    assert Decimal(row["estimated_usd"]) > 0
    assert Decimal(row["cost_usd"]) == Decimal(row["settled_usd"]) + Decimal(row["estimated_usd"])
