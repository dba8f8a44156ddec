"""The newcomer path: ``wflo demo`` on a fresh WFLO_HOME, then ``wflo costs`` agreeing with the ledger
and with the event stream (JSONL, relayed from the outbox) to the cent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from wflo_core.config import load_settings
from wflo_core.ledger.rollups import run_total
from wflo_core.ledger.store import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("bubblewrap")]  # the demo sandboxes code
WFLO = str(Path(sys.executable).parent / "wflo")


def wflo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}  # DAGSTER_HOME is unset: `wflo demo` picks WFLO_HOME/dagster
    return subprocess.run([WFLO, *args], capture_output=True, text=True, timeout=300, env=env)


def test_demo_then_costs_match_ledger_and_events() -> None:
    home = Path(os.environ["WFLO_HOME"])
    assert not home.exists()  # the newcomer's machine: nothing set up
    runs = []
    for _ in range(2):
        demo = wflo("demo")
        assert demo.returncode == 0, demo.stderr
        assert "LLM cost by step" in demo.stdout and "LLM cost by model" in demo.stdout
        assert "Traceback" not in demo.stdout + demo.stderr
        run_id = re.search(r"run (\S+) of research_agent_job succeeded", demo.stdout).group(1)
        printed = Decimal(re.search(r"total LLM cost of the run: \$([0-9.]+)", demo.stdout).group(1))
        runs.append((run_id, printed))

    costs = wflo("costs", "--by", "run", "--format", "json")
    assert costs.returncode == 0, costs.stderr
    by_run = {row["key"]: Decimal(row["cost_usd"]) for row in json.loads(costs.stdout)}

    relay = wflo("events", "relay")
    assert relay.returncode == 0, relay.stderr
    settled: dict[str, Decimal] = defaultdict(Decimal)
    succeeded: dict[str, Decimal] = {}
    for line in load_settings().events_path.read_text().splitlines():
        event = json.loads(line)
        if event["type"] in ("io.wflo.llm_call.settled", "io.wflo.llm_call.cache_hit"):
            settled[event["data"]["run_id"]] += Decimal(str(event["data"]["cost_usd"]))
        elif event["type"] == "io.wflo.run.succeeded":
            succeeded[event["data"]["run_id"]] = Decimal(str(event["data"]["cost_usd"]))

    ledger = Ledger(load_settings().ledger_url)
    with ledger.transaction() as session:
        in_ledger = {run_id: run_total(session, run_id) for run_id, _ in runs}
    ledger.close()
    assert set(by_run) == {run_id for run_id, _ in runs}
    for run_id, printed in runs:
        assert by_run[run_id] == in_ledger[run_id] == settled[run_id] == succeeded[run_id] == printed
    (_, paid), (second, repeat) = runs
    assert paid > 0 and repeat == 0, "the second demo is answered by the cache that outlives each process"
    saved = {row["key"]: Decimal(row["saved_usd"]) for row in json.loads(costs.stdout)}
    assert saved[second] == paid, "what the cache hits saved is exactly what the first run paid"

    csv_total = sum(
        Decimal(line.split(",")[5]) for line in wflo("costs", "--format", "csv").stdout.splitlines()[1:]
    )
    assert csv_total == sum(in_ledger.values())
    table = wflo("costs", "--by", "model")
    assert table.returncode == 0 and f"{sum(in_ledger.values()):.6f}" in table.stdout


def test_costs_on_a_bad_option_is_one_line_and_exit_1() -> None:
    result = wflo("costs", "--by", "colour")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --by must be one of run, step, workflow, asset, model, provider, tag, day, got 'colour'"
    ]
