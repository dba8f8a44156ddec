"""The step recorder: one step's ledger rows (open → close), its calls' scope and keys, and its totals.

A scheduler adapter (``wflo_dagster``) describes the step once as a :class:`StepInfo` and then only
forwards: ``open()`` when the step starts, ``complete()``/``stream()`` for each LLM call, ``close()``
when it ends. Everything that writes the ledger or emits events happens here, so the rules are the
same however the step runs.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TypedDict

from sqlalchemy.orm import Session

from wflo_core.budgets import BudgetBook, CallScope
from wflo_core.budgets.reservations import check_limit
from wflo_core.budgets.scopes import tags_from
from wflo_core.calls import CallOutcome, LLMRequest, LLMResponse
from wflo_core.checkpoints import SettledResults
from wflo_core.errors import LedgerError, WfloError, first_line
from wflo_core.events.outbox import EventRecorder
from wflo_core.events.schemas import EventData, RunStarted, StepFailed, StepRetried, StepStarted, StepSucceeded
from wflo_core.keys import APPROVAL_TAG, BUDGET_TAG, ON_BREACH_TAG, RUN_BUDGET_TAG
from wflo_core.ledger.store import Ledger
from wflo_core.llm.gateway import Gateway, Remember
from wflo_core.llm.providers.base import StreamChunk
from wflo_core.money import parse_usd
from wflo_core.steps import statements
from wflo_core.steps.totals import StepTotals
from wflo_core.steps.writer import StepWriter

_SUB_AGENT: ContextVar[tuple[str, int | None] | None] = ContextVar("wflo_sub_agent", default=None)
"""The sub-agent the current task's calls belong to, and the parent call it was delegated after."""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the scheduler knows about a step, as plain values."""

    run_id: str
    step_key: str
    workflow: str
    attempt: int = 0
    asset_key: str | None = None
    run_tags: Mapping[str, str] = field(default_factory=dict)
    op_tags: Mapping[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    partition_key: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetDefaults:
    """Run limits that apply when the run's tags set none: the resource's, then (below the step's own
    ``wflo/run_budget_usd`` op tag) the settings'."""

    run_limit_usd: Decimal | None = None
    fallback_run_limit_usd: Decimal | None = None
    on_breach: str = "fail"


class StepRecorder:
    """Records one step (all its attempts in this process) and sends its calls through the gateway."""

    def __init__(self, info: StepInfo, *, ledger: Ledger, budgets: BudgetBook, gateway: Gateway,
                 record_event: EventRecorder, settled: SettledResults, defaults: BudgetDefaults,
                 writer: StepWriter) -> None:
        self.info = info
        self._writer = writer
        self._opening: Future[None] | None = None
        self._ledger, self._budgets, self._gateway = ledger, budgets, gateway
        self._record_event, self._settled, self._defaults = record_event, settled, defaults
        self._scope: CallScope | None = None
        self._seq: dict[int, int] = {}
        self._totals = StepTotals()
        self._last_call_id: int | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def open(self, info: StepInfo) -> None:
        """Open this attempt's ``steps`` row (and the run's, first time) with their events.

        On Postgres a step's first attempt opens in one statement: in the background when this
        process already recorded the run (see :mod:`wflo_core.steps.writer`), else here. A retried
        attempt or a re-executed run opens in one ORM transaction.
        """
        self.info = info
        self._opening = None
        if self._ledger.dialect == "postgresql" and info.attempt == 0 and not info.parent_run_id:
            scope = self._new_scope()
            limits = self._limits(None, scope)  # a bad budget tag fails the step here, before it runs
            started = StepStarted(run_id=info.run_id, step_key=info.step_key, attempt=0, asset_key=scope.asset_key)
            self._scope = scope
            write = functools.partial(statements.open_step, self._ledger, self._record_event, info, scope, limits,
                                      started)
            if info.run_id in self._ledger.recorded_runs:
                self._opening = self._writer.submit(write)
                return
            write()
            self._ledger.recorded_runs.add(info.run_id)
            return
        self._open_in_transaction(info)

    def _open_in_transaction(self, info: StepInfo) -> None:
        with self._ledger.transaction() as session:
            scope = self._scope_in(session)
            if self._ledger.ensure_run(session, info.run_id, info.workflow, tags=dict(info.run_tags),
                                       parent_run_id=info.parent_run_id):
                self._record_event(session, RunStarted(run_id=info.run_id, workflow=info.workflow,
                                                       tags=dict(info.run_tags), parent_run_id=info.parent_run_id))
            earlier = (self._ledger.close_earlier_attempts(session, info.run_id, info.step_key, info.attempt)
                       if info.attempt else [])
            for step in earlier:
                self._record_event(session, StepRetried(
                    run_id=info.run_id, step_key=info.step_key, attempt=step.attempt, asset_key=scope.asset_key,
                    error=f"attempt {step.attempt} failed; Dagster retried it"))
            self._ledger.open_step(session, info.run_id, info.step_key, info.attempt, asset_key=scope.asset_key,
                                   tags=dict(scope.tags))
            self._record_event(session, StepStarted(run_id=info.run_id, step_key=info.step_key,
                                                    attempt=info.attempt, asset_key=scope.asset_key))
        self._ledger.recorded_runs.add(info.run_id)

    def opened(self) -> None:
        """Wait for this attempt's open if it is being written in the background; raise what it raised."""
        opening = self._opening
        if opening is None:
            return
        try:
            opening.result()
        except WfloError:
            raise
        except Exception as err:
            reason = first_line(getattr(err, "orig", None) or err)
            raise LedgerError(f"the ledger could not record step {self.info.step_key!r} of run {self.info.run_id} "
                              f"({reason}); check the ledger database") from err

    def close(self, status: str, error: str | None = None) -> None:
        """Close the latest attempt with its totals: ``succeeded`` or ``failed`` (on Postgres one statement,
        in the background once this process has recorded the run)."""
        info, totals = self.info, self.totals.snapshot()
        if self._ledger.dialect == "postgresql" and self._scope is not None:
            event = step_closed_event(info.run_id, info.step_key, info.attempt, self._scope.asset_key, status,
                                      error, totals)
            write = functools.partial(self._close_now, info, status, error, event, totals)
            if info.run_id in self._ledger.recorded_runs:
                self._writer.submit(write)
            else:
                write()
            return
        close_step(self._ledger, self._record_event, info.run_id, info.step_key, info.workflow, status, error,
                   totals)

    def _close_now(self, info: StepInfo, status: str, error: str | None, event: EventData,
                   totals: StepTotals) -> None:
        """The close statement, or the ORM close for an attempt that has no row."""
        if not statements.close_step(self._ledger, self._record_event, info, status, error, event):
            close_step(self._ledger, self._record_event, info.run_id, info.step_key, info.workflow, status, error,
                       totals)

    # ------------------------------------------------------------------ calls

    @property
    def scope(self) -> CallScope:
        """Who this step's calls are charged to (its tag budgets are set up on first use)."""
        if self._scope is None:
            with self._ledger.transaction() as session:
                self._scope_in(session)
        assert self._scope is not None
        return self._scope

    def complete(self, request: LLMRequest, *, on_reuse: Callable[[str], object] | None = None) -> LLMResponse:
        """Answer ``request``: an answer this run's chain already paid for, else through the gateway.

        ``on_reuse`` is told (one line for the step's log) when a paid answer is reused.
        """
        seq, call_key = self._next_call()
        reused = self._recall(seq, request, on_reuse)
        if reused is not None:
            return reused
        scope = self._call_scope()
        response, outcome = self._gateway.complete(request, scope, call_key, remember=self._remember(seq, request))
        self._count(outcome)
        return response

    def stream(self, request: LLMRequest, *, on_reuse: Callable[[str], object] | None = None
               ) -> Iterator[StreamChunk]:
        """Stream ``request`` through the gateway; the last chunk carries the full response. An answer
        this run's chain already paid for streams as one chunk, not sent and not charged."""
        seq, call_key = self._next_call()
        reused = self._recall(seq, request, on_reuse)
        if reused is not None:
            yield StreamChunk(text=reused.text)
            yield StreamChunk(response=reused)
            return
        yield from self._gateway.stream(request, self._call_scope(), call_key, on_outcome=self._count,
                                        remember=self._remember(seq, request))

    def sdk_hooks(self) -> dict[str, Callable[..., object]]:
        """For drop-in SDK clients (``wflo_core.llm.dropin``): each request's scope (sub-agent aware),
        its ledger key in this step's call sequence, and where its outcome is counted."""
        return {"scope": self._call_scope, "call_key": lambda: self._next_call()[1], "on_outcome": self._count}

    @contextmanager
    def sub_agent(self, name: str) -> Iterator[None]:
        """Attribute the calls made inside to sub-agent ``name`` (tag ``agent=name``), linked to the
        parent's last call; they still roll up to this step and run."""
        token = _SUB_AGENT.set((name, self._last_call_id))
        try:
            yield
        finally:
            _SUB_AGENT.reset(token)

    @property
    def totals(self) -> StepTotals:
        with self._lock:
            return self._totals

    # ------------------------------------------------------------------ internals

    def _new_scope(self) -> CallScope:
        info = self.info
        return CallScope(run_id=info.run_id, workflow=info.workflow, step_key=info.step_key,
                         asset_key=info.asset_key, tags={**tags_from(info.run_tags), **tags_from(info.op_tags)},
                         partition_key=info.partition_key)

    def _scope_in(self, session: Session) -> CallScope:
        if self._scope is None:
            scope = self._new_scope()
            for limit in self._limits(session, scope):
                self._budgets.ensure_limit(session, *limit)
            self._scope = scope
        return self._scope

    def _limits(self, session: Session | None, scope: CallScope) -> list[tuple[str, str, Decimal, str]]:
        """The budgets the step's calls need, as (scope, key, limit, on_breach): the run's (its tags, else
        the step's op tags, else the defaults) and this materialization's own (the asset's ``budget_usd``).

        A re-executed run (Dagster's re-execution, ``wflo runs resume``) is held against what is left
        of its parent's run budget, not a fresh limit (read in ``session``); approval continuations
        carry that in their tag.
        """
        info, defaults = self.info, self._defaults
        limits: list[tuple[str, str, Decimal, str]] = []
        on_breach = info.run_tags.get(ON_BREACH_TAG, defaults.on_breach)
        candidates = (info.run_tags.get(BUDGET_TAG), info.run_tags.get(RUN_BUDGET_TAG), defaults.run_limit_usd,
                      info.op_tags.get(RUN_BUDGET_TAG), defaults.fallback_run_limit_usd)
        given = next((c for c in candidates if c is not None and c != ""), None)
        limit = parse_usd(given, "run budget (wflo/budget_usd)") if given is not None else None
        if info.parent_run_id and APPROVAL_TAG not in info.run_tags:
            assert session is not None, "a re-executed run's budget depends on its parent's spend"
            if limit is not None:
                limit = max(Decimal(0), limit - self._budgets.run_chain_spend(session, info.parent_run_id))
            else:  # launched without the parent's tags: what the parent's own budget has left
                limit = self._budgets.remaining(session, "run", info.parent_run_id)
        if limit is not None:
            limits.append(("run", info.run_id, limit, on_breach))
        if scope.materialization_key and BUDGET_TAG in info.op_tags:
            limits.append(("materialization", scope.materialization_key,
                           parse_usd(info.op_tags[BUDGET_TAG], BUDGET_TAG), on_breach))
        for kind, key, usd, breach in limits:
            check_limit(kind, key, usd, breach)
        return limits

    def _recall(self, seq: int, request: LLMRequest, on_reuse: Callable[[str], object] | None) -> LLMResponse | None:
        info = self.info
        reused = self._settled.recall(run_id=info.run_id, step_key=info.step_key, seq=seq, request=request)
        if reused is not None and on_reuse is not None:
            on_reuse(f"call {seq} of {info.step_key} was answered and paid for earlier in this run's chain; "
                     "reusing that answer (not sent, not charged)")
        return reused

    def _remember(self, seq: int, request: LLMRequest) -> Remember:
        """Saves the answer as this step's ``seq``-th in the transaction that settles it."""
        info = self.info

        def remember(session: Session, response: LLMResponse) -> None:
            self._settled.remember(session, run_id=info.run_id, workflow=info.workflow, step_key=info.step_key,
                                   seq=seq, request=request, response=response)

        return remember

    def _next_call(self) -> tuple[int, str]:
        """The call's sequence number within this step attempt, and its ledger idempotency key."""
        info = self.info
        with self._lock:
            seq = self._seq[info.attempt] = self._seq.get(info.attempt, 0) + 1
        return seq, f"{info.run_id}:{info.step_key}:{info.attempt}:{seq}"

    def _call_scope(self) -> CallScope:
        self.opened()  # the step's budgets and row before its calls' holds
        scope = self.scope
        agent = _SUB_AGENT.get()
        if agent is None:
            return scope
        name, parent_call_id = agent
        return replace(scope, tags={**scope.tags, "agent": name}, parent_call_id=parent_call_id)

    def _count(self, outcome: CallOutcome) -> None:
        with self._lock:
            self._totals.add(outcome)
            if outcome.call_id is not None:
                self._last_call_id = outcome.call_id


class _ClosedStep(TypedDict):
    """The fields ``StepSucceeded`` and ``StepFailed`` share."""

    run_id: str
    step_key: str
    attempt: int
    asset_key: str | None
    cost_usd: Decimal


def close_step(ledger: Ledger, record_event: EventRecorder, run_id: str, step_key: str, workflow: str,
               status: str, error: str | None, totals: StepTotals) -> None:
    """Close a step's latest attempt and emit its event; a step that never opened a row gets one."""
    with ledger.transaction() as session:
        closed = ledger.finish_latest_attempt(session, run_id, step_key, status, error)
        if closed is None:  # a step that never opened its row (not built with llm_asset)
            ledger.ensure_run(session, run_id, workflow)
            ledger.open_step(session, run_id, step_key)
            closed = ledger.finish_latest_attempt(session, run_id, step_key, status, error)
        assert closed is not None
        attempt, asset_key = closed
        record_event(session, step_closed_event(run_id, step_key, attempt, asset_key, status, error, totals))


def step_closed_event(run_id: str, step_key: str, attempt: int, asset_key: str | None, status: str,
                      error: str | None, totals: StepTotals) -> StepSucceeded | StepFailed:
    common: _ClosedStep = {"run_id": run_id, "step_key": step_key, "attempt": attempt, "asset_key": asset_key,
                           "cost_usd": totals.cost_usd}
    if status == "succeeded":
        return StepSucceeded(**common, llm_calls=totals.calls, cache_hits=totals.cache_hits,
                             saved_usd=totals.saved_usd)
    return StepFailed(**common, error=error or "step failed")
