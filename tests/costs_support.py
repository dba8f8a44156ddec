"""Real ledger rows for the ``wflo costs`` tests, and what the ledger's own ORM roll-up says of them.

The rows are LLM calls sent through the gateway, over the real SDKs, to the fake OpenAI/Anthropic
server (tests/llm_server.py): settled calls of three models and two providers, a cache hit, a stream
cut off mid-answer (``estimated``), a rejected request (``failed``, not billed), across three runs of
two workflows with steps, assets and tags; one run is moved three days back so ``--since`` and
``--by day`` have something to tell apart. The same module runs on SQLite and on Postgres.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import func, select, update

from wflo_core.budgets import CallScope
from wflo_core.calls import LLMRequest, Message
from wflo_core.config import WfloSettings, load_settings
from wflo_core.ledger.models import BILLED_STATUSES, LLMCall
from wflo_core.ledger.reads import DIMENSIONS, RollupRow
from wflo_core.ledger.rollups import cost_rollup
from wflo_core.ledger.store import Ledger
from wflo_core.services import build_services
from wflo_dagster.cli.costs import _row_dict, rollup_table

WIDTH = 200
"""Terminal width for the table, in the CLI's process (``COLUMNS``) and when rendering the expected one."""

A = CallScope(run_id="run-a", workflow="triage", step_key="classify", asset_key="tickets",
              tags={"team": "ml", "agent": "planner"})
B = CallScope(run_id="run-b", workflow="research", step_key="code", tags={"team": "ops"})
C = CallScope(run_id="run-c", workflow="research", step_key="plan", asset_key="plan")
OLD = timedelta(days=3)
"""How far back run C's calls are moved."""


def live_settings(llm_server: Any, **overrides: Any) -> WfloSettings:
    return load_settings(llm_mode="live", openai_api_key="sk-test-costs", openai_base_url=llm_server.openai_base_url,
                         anthropic_api_key="sk-ant-test-costs", anthropic_base_url=llm_server.base_url,
                         retry_base_delay_seconds=0.01, **overrides)


def _ask(provider: str, model: str, text: str) -> LLMRequest:
    return LLMRequest(provider=provider, model=model, messages=(Message("user", text),), max_tokens=60,
                      temperature=0.0)


def write_calls(settings: WfloSettings) -> None:
    """Send the calls (see the module docstring); the ledger must be at its head already."""
    services = build_services(settings)
    try:
        gateway = services.gateway
        gateway.complete(_ask("openai", "gpt-4o-mini", "Ticket T1: refund please"), A, "a1")
        _, hit = gateway.complete(_ask("openai", "gpt-4o-mini", "Ticket T1: refund please"), A, "a2")
        assert hit.cache_hit
        gateway.complete(_ask("openai", "gpt-4o-mini", "Ticket T2: the site is down"), A, "a3")
        gateway.complete(_ask("anthropic", "claude-3-5-haiku-latest", "Write the parser"), B, "b1")
        with pytest.raises(Exception):  # noqa: B017 - whichever error the SDK raises for the dropped stream
            list(gateway.stream(_ask("openai", "gpt-4o-mini", "[drop] a long answer"), B, "b2"))
        with pytest.raises(Exception):  # noqa: B017 - the provider's 400, not retried
            gateway.complete(_ask("openai", "gpt-4o-mini", "[fail:400*1] a bad request"), B, "b3")
        gateway.complete(_ask("openai", "gpt-4o", "Plan the study"), C, "c1")
        with services.ledger.transaction() as session:
            session.execute(update(LLMCall).where(LLMCall.run_id == C.run_id)
                            .values(created_at=datetime.now(UTC) - OLD))
            statuses = set(session.scalars(select(LLMCall.status)))
        assert {"settled", "cache_hit", "estimated", "failed"} <= statuses, statuses
    finally:
        services.close()


def ledger_rollup(url: str, by: str, **filters: Any) -> list[RollupRow]:
    """What the ORM roll-up (``cost_rollup``, the one the pipelines and the Dagster UI use) says."""
    with Ledger(url) as ledger, ledger.transaction() as session:
        return cost_rollup(session, by, **filters)  # type: ignore[arg-type]


def ledger_total(url: str) -> Decimal:
    """The billed cost of every call, summed by the database over the ledger's own column."""
    with Ledger(url) as ledger, ledger.transaction() as session:
        total = session.scalar(select(func.sum(LLMCall.cost_usd)).where(LLMCall.status.in_(BILLED_STATUSES)))
    assert total is not None
    return total


def since_cut() -> datetime:
    """Between run C (three days back) and the other runs (now)."""
    return (datetime.now(UTC) - OLD / 2).replace(tzinfo=None)


def option_cases(url: str) -> list[tuple[list[str], dict[str, Any]]]:
    """Every ``--by``, alone and with each filter: (CLI arguments, the same filters for ``cost_rollup``)."""
    cut = since_cut()
    with Ledger(url) as ledger, ledger.transaction() as session:  # a bound the first call of run B sits on
        at_b1 = session.scalar(select(LLMCall.created_at).where(LLMCall.idempotency_key == "b1"))
    assert at_b1 is not None
    at_b1 = at_b1.astimezone(UTC).replace(tzinfo=None)
    filters: list[tuple[list[str], dict[str, Any]]] = [
        ([], {}),
        (["--since", at_b1.isoformat()], {"since": at_b1}),
        (["--run", B.run_id], {"run_id": B.run_id}),
        (["--workflow", "research"], {"workflow": "research"}),
        (["--since", cut.isoformat()], {"since": cut}),
        (["--since", cut.date().isoformat()], {"since": datetime.fromisoformat(cut.date().isoformat())}),
        (["--since", cut.replace(tzinfo=UTC).isoformat(), "--workflow", "research", "--run", C.run_id],
         {"since": cut.replace(tzinfo=UTC), "workflow": "research", "run_id": C.run_id}),
    ]
    return [(["--by", by, *args], {"by": by, **kw}) for by in DIMENSIONS for args, kw in filters]


def expected(url: str, fmt: str, by: str, **filters: Any) -> str:
    """What ``wflo costs`` printed before it read through the driver: the ORM rows, formatted by the CLI."""
    rows = ledger_rollup(url, by, **filters)
    if fmt == "json":
        return json.dumps([_row_dict(r) for r in rows], indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(_row_dict(rows[0]).keys()) if rows else ["key"])
        writer.writeheader()
        writer.writerows(_row_dict(r) for r in rows)
        return out.getvalue()
    console = Console(file=io.StringIO(), width=WIDTH)
    console.print(rollup_table(rows, by, f"LLM cost by {by}"))
    return console.file.getvalue()  # type: ignore[attr-defined]


PROBE = """
import json, sys
from wflo_dagster.cli import main
sys.argv = ["wflo", *sys.argv[1:]]
try:
    main()
finally:
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def wflo_costs(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``wflo costs ARGS`` in a fresh process, as a user runs it; and the packages that process imported."""
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    ran = subprocess.run([sys.executable, "-c", PROBE, "costs", *args], capture_output=True, env=env, timeout=120)
    *errors, loaded = ran.stderr.decode().splitlines() or [""]
    # bytes, decoded as they are: csv ends its lines with \r\n, which text mode would turn into \n
    done = subprocess.CompletedProcess(ran.args, ran.returncode, ran.stdout.decode(), "\n".join(errors))
    return done, set(json.loads(loaded)) if loaded.startswith("[") else set()
