"""Every ``wflo`` command on a fresh home: one line of output or error, never a traceback; and
what each command imports, so the CLI stays fast to start (the figures are in bench/bench_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli_support import run_wflo as wflo
from wflo_core.budgets.scopes import SCOPES
from wflo_core.ledger import revisions
from wflo_core.ledger.access import schema_state
from wflo_core.ledger.migrations import heads
from wflo_core.ledger.revisions import migration_heads
from wflo_core.ledger.rollups import DIMENSIONS
from wflo_dagster.cli import app, budgets, costs

FRESH_HOME = [
    # (argv, exit code, the one line it prints, to stdout or stderr)
    (["costs"], 0, None),
    (["costs", "--by", "nonsense"], 1, "error: --by must be one of run, step, workflow, asset, model"),
    (["budgets", "list", "--format", "json"], 0, "[]"),
    (["budgets", "show", "run", "r-1"], 1, "error: no run budget 'r-1'; see `wflo budgets list`"),
    (["approvals", "list"], 0, "no approval requests"),
    (["approvals", "list", "--format", "json"], 0, "[]"),
    (["approvals", "show", "apr-1"], 1, "error: no approval 'apr-1'; see `wflo approvals list`"),
    (["approvals", "approve", "apr-1", "--by", "ana", "--reason", "ok"], 1,
     "error: no approval 'apr-1'; see `wflo approvals list`"),
    (["approvals", "reject", "apr-1", "--by", "ana", "--reason", "no"], 1,
     "error: no approval 'apr-1'; see `wflo approvals list`"),
    (["runs", "rollback", "run-1"], 0, "run run-1 registered no compensations"),
    (["runs", "resume", "run-1"], 1, "error: set DAGSTER_HOME to the Dagster instance that ran the run"),
    (["events", "tail"], 0, "no matching events"),
    (["events", "relay"], 0, "published 0, dead-lettered 0, still pending 0"),
    (["events", "topics"], 1, "error: "),
    (["db", "upgrade"], 0, "ledger at sqlite:///"),
    (["estimate", "no_such_job"], 1, "error: no job named 'no_such_job' in wflo_dagster.definitions"),
    (["demo", "--job", "no_such_job"], 1, "error: no job named 'no_such_job' in wflo_dagster.definitions"),
    (["sandbox", "run", "--backend", "nonsense", __file__], 1, "error: --backend must be docker or process"),
]


@pytest.mark.parametrize(("argv", "code", "line"), FRESH_HOME, ids=[" ".join(a) for a, _, _ in FRESH_HOME])
def test_every_command_on_a_fresh_home_prints_one_line_not_a_traceback(
    capsys, monkeypatch, argv: list[str], code: int, line: str | None
) -> None:
    exit_code, out, err = wflo(capsys, monkeypatch, *argv)
    assert exit_code == code, (out, err)
    assert "Traceback" not in out + err and "sqlalchemy" not in (out + err).lower()
    if line is not None:
        text = (out + err).strip()
        assert text.startswith(line), text
        assert len(text.splitlines()) == 1 or text.startswith("["), text


def test_a_fresh_home_ledger_is_migrated_by_the_first_command(capsys, monkeypatch, tmp_path: Path) -> None:
    wflo(capsys, monkeypatch, "approvals", "list")
    state = schema_state(f"sqlite:///{tmp_path / 'wflo-home' / 'ledger.db'}")
    assert state.at_head and state.revision in heads()


def test_a_server_ledger_is_not_migrated_behind_the_operators_back(capsys, monkeypatch, tmp_path: Path) -> None:
    # Any non-embedded URL takes the "check, never migrate" path; an empty SQLite file stands in for it.
    url = f"sqlite:///{tmp_path / 'server.db'}"
    monkeypatch.setenv("WFLO_DATABASE_URL", url)
    code, out, err = wflo(capsys, monkeypatch, "approvals", "list")
    assert code == 1 and out == ""
    assert err.strip() == (f"error: ledger at {url} is at revision none (empty database), "
                           f"expected {', '.join(heads())}; run `wflo db upgrade`")
    assert schema_state(url).revision is None


def test_heads_read_without_alembic_match_alembics() -> None:
    assert list(migration_heads()) == sorted(heads())


def test_heads_are_read_from_either_alembic_template(monkeypatch, tmp_path: Path) -> None:
    # Alembic's older template writes `revision = '...'`, its newer one annotates the assignments;
    # a merge revision names a tuple of parents.
    (tmp_path / "a.py").write_text('"""revision = \'not-this\'"""\nrevision = "a"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text("revision: str = 'b'\ndown_revision: Union[str, None] = 'a'\n")
    (tmp_path / "c.py").write_text("revision: str = 'c'\ndown_revision: str | None = 'a'\n")
    (tmp_path / "d.py").write_text("revision: str = 'd'\ndown_revision = ('b', 'c')\n")
    (tmp_path / "e.py").write_text("revision = 'e'\ndown_revision = 'a'\n")
    monkeypatch.setattr(revisions, "_VERSIONS", tmp_path)
    migration_heads.cache_clear()
    try:
        assert migration_heads() == ("d", "e")
    finally:
        migration_heads.cache_clear()


def test_help_texts_name_every_choice_the_core_accepts() -> None:
    assert all(d in costs.BY_HELP for d in DIMENSIONS)
    assert all(s in budgets.SCOPE_HELP for s in SCOPES)


def test_commands_are_registered_on_the_app() -> None:
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert names == {"costs", "budgets", "approvals", "runs", "events", "estimate", "demo", "sandbox", "db",
                     "doctor"}


HEAVY = ("dagster", "openai", "anthropic", "matplotlib", "docker", "alembic", "confluent_kafka", "redis")
PROBE = """
import json, sys
sys.argv = ["wflo", *sys.argv[1:]]
from wflo_dagster.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def loaded_packages(*argv: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_loads_neither_the_sdks_nor_dagster_nor_sqlalchemy() -> None:
    # Plain (click-style) help: typer's rich help alone imports rich, markdown-it and pygments.
    assert loaded_packages("--help") & {*HEAVY, "sqlalchemy", "pydantic_settings", "pydantic", "rich"} == set()


def test_costs_reads_the_ledger_without_sqlalchemy() -> None:
    loaded_packages("db", "upgrade")  # the first command on a home migrates it, with Alembic
    loaded = loaded_packages("costs", "--format", "json")
    assert "sqlite3" in loaded
    assert loaded & {*HEAVY, "sqlalchemy", "psycopg", "rich"} == set()  # JSON output needs no table renderer
    assert loaded_packages("costs") & {*HEAVY, "sqlalchemy", "psycopg"} == set()  # the table needs rich only
