"""The money-path property trial: many processes and threads spend against shared budgets at once.

Used by ``tests/integration/test_money_property.py`` (20 trials in the suite) and by
``scripts/soak_money.py`` (as many as you like). Each trial gives 6 worker processes × 4 threads a
random mix of complete, streams read to the end, streams dropped at a random chunk, 429/500/timeout
answers with retries, cache hits and holds that expire while their call is in flight; then checks,
for every budget: spent ≤ limit, spent == the ledger's total for that scope, nothing left held, and
every request the server received is one ledger row (a row whose request never arrived, because the
client gave up first, is estimated).
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from wflo_core.budgets import CallScope
from wflo_core.calls import LLMRequest, Message
from wflo_core.config import load_settings
from wflo_core.errors import WfloError
from wflo_core.ledger.models import BILLED_STATUSES, Budget, BudgetHold, LLMCall
from wflo_core.services import build_services

PROCESSES, THREADS, OPS = 6, 4, 6
SPAWN = mp.get_context("spawn")
SENT_STATUSES = ("settled", "over_bound", "estimated", "failed")
SHARED_QUESTION = "the shared question"
"""Where requests and rows of the cacheable question all threads of a trial ask are counted together."""
"""Statuses of rows whose attempt reached the provider (a cache hit does not; a refused call has no row)."""
OPERATIONS = ("complete", "complete", "cached", "stream", "drop_stream", "fail_500", "fail_429", "timeout",
              "slow_expiring")


@dataclass
class TrialReport:
    trial: int
    budgets: list[tuple[str, str, Decimal, Decimal, Decimal, Decimal]] = field(default_factory=list)
    """(scope, key, limit, spent, held, ledger total) per budget."""
    held_rows: int = 0
    open_holds: int = 0
    requests_by_call: dict[str, int] = field(default_factory=dict)
    """Requests the server received, by the call key in their prompt."""
    sent_rows_by_call: dict[str, list[str]] = field(default_factory=dict)
    """Statuses of the ledger rows whose attempt was sent, by call key (attempts ``#k`` included)."""
    rows_by_status: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        found = [f"{s} {k}: spent {spent} > limit {limit}" for s, k, limit, spent, _, _ in self.budgets
                 if spent > limit]
        found += [f"{s} {k}: spent {spent} != ledger {total}" for s, k, _, spent, _, total in self.budgets
                  if spent != total]
        found += [f"{s} {k}: held {held}" for s, k, _, _, held, _ in self.budgets if held != 0]
        if self.held_rows or self.open_holds:
            found.append(f"{self.held_rows} held rows, {self.open_holds} open holds")
        for call in sorted({*self.requests_by_call, *self.sent_rows_by_call}):
            received, rows = self.requests_by_call.get(call, 0), self.sent_rows_by_call.get(call, [])
            if received > len(rows):
                found.append(f"{call}: the server got {received} requests, the ledger has {len(rows)} rows")
            elif rows.count("estimated") < len(rows) - received:
                # an attempt whose request never reached the server (the client gave up first) can only
                # be estimated: nobody knows whether it was billed
                found.append(f"{call}: {len(rows)} rows {rows} for {received} requests")
        return found + self.errors


def settings_for(database_url: str, base_url: str) -> Any:
    return load_settings(database_url=database_url, llm_mode="live", openai_api_key="sk-test-secret",
                         openai_base_url=base_url, retry_max_attempts=2, retry_base_delay_seconds=0.01,
                         llm_timeout_seconds=1.0, breaker_failure_threshold=10_000, cache_mode="auto")


def worker(database_url: str, base_url: str, inbox: Any, outbox: Any) -> None:
    """One process: 4 threads per trial through one shared gateway, until told to stop."""
    services = build_services(settings_for(database_url, base_url), attempt_ttl=timedelta(seconds=0.5))
    try:
        while (job := inbox.get()) is not None:
            trial, seed = job
            errors: list[str] = []
            threads = [threading.Thread(target=_thread, args=(services, trial, seed, t, errors))
                       for t in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outbox.put(errors)
    finally:
        services.close()


def _thread(services: Any, trial: int, seed: int, thread: int, errors: list[str]) -> None:
    rng = random.Random(f"{seed}:{thread}")
    scope = CallScope(run_id=f"trial-{trial}", workflow="property", step_key=f"s{seed}-{thread}",
                      tags={"team": "prop"})
    for op in range(OPS):
        kind = rng.choice(OPERATIONS)
        key = f"trial-{trial}:{seed}:{thread}:{op}"
        text = f"{kind} {key} please answer at some length so that the stream has several chunks"
        try:
            if kind == "cached":  # deterministic and shared by every thread of the trial: cache hits
                services.gateway.complete(_req(f"the shared question of trial {trial}", 0.0), scope, key)
            elif kind == "stream":
                list(services.gateway.stream(_req(text), scope, key))
            elif kind == "drop_stream":
                stream = services.gateway.stream(_req(text), scope, key)
                for _ in range(rng.randint(1, 4)):
                    if next(stream, None) is None:
                        break
                stream.close()
            else:
                marker = {"fail_500": "[fail:500*1]", "fail_429": "[fail:429*1]", "timeout": "[delay:1.5]",
                          "slow_expiring": "[delay:0.7]"}.get(kind, "")
                services.gateway.complete(_req(f"{marker} {text}"), scope, key)
        except WfloError:
            pass  # refused by a budget, retries exhausted: the invariant holds either way
        except Exception as err:  # noqa: BLE001 - anything else is a bug the trial reports
            errors.append(f"{kind} {key}: {type(err).__name__}: {err}")


def _req(text: str, temperature: float = 0.7) -> LLMRequest:
    return LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", text),), max_tokens=60,
                      temperature=temperature)


class Trials:
    """Worker processes that outlive single trials, so each trial costs only its calls."""

    def __init__(self, database_url: str, llm_server: Any) -> None:
        self.database_url, self.server = database_url, llm_server
        self.services = build_services(settings_for(database_url, llm_server.openai_base_url))
        self.inboxes = [SPAWN.Queue() for _ in range(PROCESSES)]
        self.results = SPAWN.Queue()
        self.procs = [SPAWN.Process(target=worker, args=(database_url, llm_server.openai_base_url, q, self.results))
                      for q in self.inboxes]
        for p in self.procs:
            p.start()

    def run(self, trial: int) -> TrialReport:
        run_id = f"trial-{trial}"
        rng = random.Random(trial)
        with self.services.ledger.transaction() as s:
            self.services.budgets.set_limit(s, "run", run_id, Decimal(rng.choice(["0.0008", "0.0015", "0.004"])))
            self.services.budgets.set_limit(s, "workflow", "property", Decimal("1000"))
            self.services.budgets.set_limit(s, "tag", "team=prop", Decimal("1000"))
        self.server.reset()
        for seed, inbox in enumerate(self.inboxes):
            inbox.put((trial, seed))
        report = TrialReport(trial)
        for _ in self.procs:
            report.errors += self.results.get(timeout=300)
        self._check(report, run_id)
        return report

    def _check(self, report: TrialReport, run_id: str) -> None:
        with self.services.ledger.transaction() as s:
            billed = LLMCall.status.in_(BILLED_STATUSES)
            totals = {
                ("run", run_id): s.scalar(select(func.sum(LLMCall.cost_usd)).where(LLMCall.run_id == run_id, billed)),
                ("workflow", "property"): s.scalar(select(func.sum(LLMCall.cost_usd)).where(
                    LLMCall.run_id.like("trial-%"), billed)),
                ("tag", "team=prop"): s.scalar(select(func.sum(LLMCall.cost_usd)).where(
                    LLMCall.run_id.like("trial-%"), billed)),
            }
            for (scope, key), total in totals.items():
                b = s.scalar(select(Budget).where(Budget.scope == scope, Budget.scope_key == key))
                assert b is not None
                report.budgets.append((scope, key, b.limit_usd, b.spent_usd, b.held_usd, total or Decimal(0)))
            report.held_rows = s.scalar(select(func.count()).select_from(LLMCall).where(LLMCall.status == "held")) or 0
            report.open_holds = s.scalar(select(func.count()).select_from(BudgetHold)
                                         .where(BudgetHold.status == "held")) or 0
            sent = select(LLMCall.idempotency_key, LLMCall.status, LLMCall.cache_key).where(
                LLMCall.run_id == run_id, LLMCall.status.in_(SENT_STATUSES))
            for key, status, cache_key in s.execute(sent):
                call = SHARED_QUESTION if cache_key else key.split("#")[0]
                report.sent_rows_by_call.setdefault(call, []).append(status)
            report.rows_by_status = dict(s.execute(select(LLMCall.status, func.count()).where(
                LLMCall.run_id == run_id).group_by(LLMCall.status)).all())
        for request in self.server.requests():
            prompt = request["body"]["messages"][0]["content"]
            call = next((word for word in prompt.split() if word.startswith(f"{run_id}:")), SHARED_QUESTION)
            report.requests_by_call[call] = report.requests_by_call.get(call, 0) + 1

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for p in self.procs:
            p.join(60)
            if p.is_alive():
                p.kill()
        self.services.close()
