"""A new user's first pipeline: the README's snippet in a file of its own, run with the Dagster CLIs.

Without a key it stops with one line naming both choices (a key for a live call, or a recording
under WFLO_HOME), never pointing into the installed package. With a key it calls live, and three
runs in a row (``dg launch --assets`` and ``dagster asset materialize``, each a new process) pay
once: the embedded cache is a file under WFLO_HOME. A recording made once replays offline.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import REPO_ROOT
from wflo_core.ledger.models import LLMCall
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _readme_snippet() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Using wflo in your pipeline"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "my_pipeline.py"
    path.write_text(_readme_snippet())
    return path


def _env(home: Path, **extra: str) -> dict[str, str]:
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFLO_", "OPENAI_", "ANTHROPIC_"))}
    return {**env, "WFLO_HOME": str(home), "DAGSTER_HOME": str(dagster_home), **extra}


def _materialize(pipeline: Path, env: dict[str, str], *, dg: bool = False) -> subprocess.CompletedProcess[str]:
    command = ([str(BIN / "dg"), "launch", "--assets", "triage"] if dg
               else [str(BIN / "dagster"), "asset", "materialize", "--select", "triage"])
    return subprocess.run([*command, "-f", str(pipeline)], env=env, cwd=pipeline.parent, capture_output=True,
                          text=True, timeout=300)


def _ledger_rows(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "ledger.db") as db:
        return db.execute("SELECT status, cost_usd FROM llm_calls ORDER BY id").fetchall()


def test_without_a_key_the_first_run_names_both_choices_in_one_line(pipeline: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = _materialize(pipeline, _env(home))
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    line = next(line for line in output.splitlines() if "CassetteMiss:" in line)
    assert "OPENAI_API_KEY" in line and "WFLO_LLM_MODE=record" in line
    assert str(home / "cassettes" / "recorded.jsonl") in line
    assert "site-packages" not in line and "wflo_dagster/pipelines" not in line


def test_with_a_key_it_calls_live_and_three_runs_pay_once(pipeline: Path, tmp_path: Path, llm_server) -> None:
    home = tmp_path / "home"
    env = _env(home, OPENAI_API_KEY="sk-test", WFLO_OPENAI_BASE_URL=llm_server.openai_base_url)
    runs = [_materialize(pipeline, env, dg=True), _materialize(pipeline, env), _materialize(pipeline, env)]
    assert [r.returncode for r in runs] == [0, 0, 0], runs[0].stderr[-2000:]
    assert llm_server.request_count() == 1
    rows = _ledger_rows(home)
    assert [status for status, _ in rows] == ["settled", "cache_hit", "cache_hit"]
    assert rows[0][1] > 0 and [cost for _, cost in rows[1:]] == [0, 0]
    assert (home / "cache.db").is_file()


def test_a_recording_under_wflo_home_replays_offline(pipeline: Path, tmp_path: Path, llm_server) -> None:
    recording_home, offline_home = tmp_path / "recording", tmp_path / "offline"
    recorded = _materialize(pipeline, _env(recording_home, WFLO_LLM_MODE="record", OPENAI_API_KEY="sk-test",
                                           WFLO_OPENAI_BASE_URL=llm_server.openai_base_url))
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    cassette = recording_home / "cassettes" / "recorded.jsonl"
    assert len(cassette.read_text().splitlines()) == 1
    offline_home.joinpath("cassettes").mkdir(parents=True)
    cassette.rename(offline_home / "cassettes" / "recorded.jsonl")
    replayed = _materialize(pipeline, _env(offline_home))  # no key: auto mode replays the recording
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert llm_server.request_count() == 1
    assert [status for status, _ in _ledger_rows(offline_home)] == ["settled"]


def test_the_pydantic_ai_research_agent_runs_offline_under_wflo_demo(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**_env(home), "COLUMNS": "160", "OPENAI_API_KEY": "sk-must-not-be-used"}  # the demo stays offline
    env.pop("DAGSTER_HOME")
    demo = subprocess.run([str(BIN / "wflo"), "demo", "--job", "pydantic_ai_research_job"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "of pydantic_ai_research_job succeeded" in demo.stdout
    assert [status for status, _ in _ledger_rows(home)] == ["settled", "settled"]  # the tool call, the answer
    printed = Decimal(re.search(r"total LLM cost of the run: \$([0-9.]+)", demo.stdout).group(1))
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    try:
        with ledger.transaction() as session:
            assert printed == sum(session.scalars(select(LLMCall.cost_usd))) > 0
    finally:
        ledger.close()
