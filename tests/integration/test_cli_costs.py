"""``wflo costs`` on real ledgers, SQLite and Postgres: what its driver-level read prints is the ORM
roll-up's output, character for character, for every ``--by`` and filter and in every format."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from tests.costs_support import (
    WIDTH,
    A,
    B,
    C,
    expected,
    ledger_rollup,
    ledger_total,
    live_settings,
    option_cases,
    since_cut,
    wflo_costs,
    write_calls,
)
from wflo_core.config import load_settings
from wflo_core.errors import ConfigError
from wflo_core.ledger import open_ledger
from wflo_core.ledger.migrations import upgrade
from wflo_dagster.cli import app
from wflo_dagster.cli.costs import FORMATS

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, llm_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ledger holding the calls of ``tests.costs_support.write_calls``, and the CLI pointed at it."""
    overrides = {}
    if request.param == "postgres":
        raw = request.getfixturevalue("fresh_postgres_url")
        monkeypatch.setenv("WFLO_DATABASE_URL", raw)
        overrides["database_url"] = raw
        upgrade(load_settings(database_url=raw).ledger_url)  # a server ledger is migrated by the operator
    settings = live_settings(llm_server, **overrides)
    write_calls(settings)
    return settings.ledger_url


def test_each_format_in_a_fresh_process_prints_the_ledgers_figures(ledger_url: str) -> None:
    for fmt in FORMATS:
        done, loaded = wflo_costs("--format", fmt)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert done.stdout == expected(ledger_url, fmt, "model")
        assert loaded & {"sqlalchemy", "alembic", "dagster"} == set(), "read through the driver, not the ORM"
    done, _ = wflo_costs("--by", "run", "--format", "json")
    rows = json.loads(done.stdout)
    assert sum(Decimal(r["cost_usd"]) for r in rows) == ledger_total(ledger_url) > 0
    for r in rows:
        assert Decimal(r["cost_usd"]) == Decimal(r["settled_usd"]) + Decimal(r["estimated_usd"])
    assert {r["key"] for r in rows if Decimal(r["estimated_usd"]) > 0} == {B.run_id}
    assert {r["key"]: r["cache_hits"] for r in rows}[A.run_id] == 1


def test_every_by_and_filter_prints_what_the_orm_rollup_says(ledger_url: str, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    runner = CliRunner()
    for args, filters in option_cases(ledger_url):
        for fmt in ("json", "table"):
            result = runner.invoke(app, ["costs", *args, "--format", fmt])
            assert result.exit_code == 0, (args, result.output)
            assert result.output == expected(ledger_url, fmt, **filters), (args, fmt)


def test_the_cases_tell_runs_days_tags_and_filters_apart(ledger_url: str) -> None:
    """The data is rich enough that a dropped filter or a wrong group would change what is printed."""
    def keys(by: str, **filters) -> set[str]:
        return {r.key for r in ledger_rollup(ledger_url, by, **filters)}

    assert keys("run") == {A.run_id, B.run_id, C.run_id}  # run B's failed call is not billed, its others are
    assert keys("run", since=since_cut()) == {A.run_id, B.run_id}
    assert keys("run", workflow="research") == {B.run_id, C.run_id}
    assert len(keys("day")) == 2 and keys("provider") == {"openai", "anthropic"}
    assert keys("model") == {"gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest"}
    assert keys("tag") == {"team=ml", "agent=planner", "team=ops"}
    assert keys("asset") == {"tickets", "plan", ""} and keys("step") == {"classify", "code", "plan"}


def test_an_unmigrated_server_ledger_is_refused_with_the_open_ledger_message(fresh_postgres_url: str,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("WFLO_DATABASE_URL", fresh_postgres_url)
    with pytest.raises(ConfigError) as refused:
        open_ledger(load_settings())
    done, loaded = wflo_costs()
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip() == f"error: {refused.value}" and "wflo db upgrade" in done.stderr
    assert "sqlalchemy" not in loaded
