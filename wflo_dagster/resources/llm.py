"""``LLMResource``: the gateway for Dagster steps, with per-step cost totals for metadata and hooks."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy.orm import Session

from wflo_core.budgets import CallScope
from wflo_core.budgets.scopes import BUDGET_TAG, ON_BREACH_TAG, tags_from
from wflo_core.checkpoints import CheckpointStore, SettledResults
from wflo_core.config import WfloSettings, load_settings
from wflo_core.events.schemas import RunStarted, StepRetried, StepStarted
from wflo_core.llm.accounting import CallOutcome, StepTotals
from wflo_core.llm.dropin import DropinClients
from wflo_core.llm.factory import WfloServices, build_services
from wflo_core.llm.providers.base import StreamChunk
from wflo_core.llm.types import LLMRequest, LLMResponse, Message
from wflo_core.run_chain import PARENT_RUN_TAG

if TYPE_CHECKING:
    import anthropic
    import openai

StepContext = dg.AssetExecutionContext | dg.OpExecutionContext
_SUB_AGENT: ContextVar[tuple[str, int | None] | None] = ContextVar("wflo_sub_agent", default=None)


def step_identity(context: StepContext) -> tuple[str, str, int]:
    """(run id, step key, attempt) of the step this context belongs to."""
    step_key = context.get_step_execution_context().step.key
    return context.run_id, step_key, context.retry_number


def parent_run_id(context: StepContext) -> str | None:
    """The run this one continues: an approved continuation's tag, or Dagster's re-execution parent."""
    return context.run_tags.get(PARENT_RUN_TAG) or context.dagster_run.parent_run_id


class LLMResource(dg.ConfigurableResource):
    """Every LLM call a step makes: priced, budgeted, cached, retried and recorded.

    Examples:
        .. code-block:: python

            @llm_asset()
            def summary(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
                return llm.complete(context, model="gpt-4o-mini", prompt="Summarize ...").text
    """

    default_provider: str = Field(default="openai", description="Provider used when a call names none.")
    default_model: str = Field(default="gpt-4o-mini", description="Model used when a call names none.")
    llm_mode: str | None = Field(
        default=None, description="replay, live or record; unset = WFLO_LLM_MODE (default replay)."
    )
    cassette_path: str | None = Field(default=None, description="Cassette for replay/record mode.")
    run_budget_usd: str | None = Field(
        default=None, description="Limit for each run using this resource, e.g. '2.50'. A run's "
        "'wflo/budget_usd' tag wins; unset = WFLO_BUDGET_RUN_USD (or no run budget).")

    _services: WfloServices | None = PrivateAttr(default=None)
    _dropin: DropinClients | None = PrivateAttr(default=None)
    _totals: dict[tuple[str, str], StepTotals] = PrivateAttr(default_factory=lambda: defaultdict(StepTotals))
    _seq: dict[tuple[str, str, int], int] = PrivateAttr(default_factory=lambda: defaultdict(int))
    _scopes: dict[tuple[str, str], CallScope] = PrivateAttr(default_factory=dict)
    _last_call: dict[tuple[str, str], int] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _settings(self) -> WfloSettings:
        overrides: dict[str, Any] = {}
        if self.llm_mode:
            overrides["llm_mode"] = self.llm_mode
        if self.cassette_path:
            overrides["cassette_path"] = self.cassette_path
        return load_settings(**overrides)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._services = build_services(self._settings())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._dropin is not None:
            self._dropin.close()
            self._dropin = None
        if self._services is not None:
            self._services.relay_events()  # in-step best effort; the relay sensor does the rest
            self._services.close()
            self._services = None

    @property
    def services(self) -> WfloServices:
        if self._services is None:  # used outside a run (direct invocation in tests)
            self._services = build_services(self._settings())
        return self._services

    # ------------------------------------------------------------------ calls

    def scope_for(self, context: StepContext, session: Session | None = None) -> CallScope:
        """Who this step's calls are charged to; its tag budgets are set up on first use."""
        run_id, step_key, _ = step_identity(context)
        if (run_id, step_key) in self._scopes:
            return self._scopes[(run_id, step_key)]
        asset_key = context.asset_key.to_user_string() if context.has_assets_def else None
        op_tags = dict(context.op_def.tags or {})
        tags = {**tags_from(context.run_tags), **tags_from(op_tags)}
        scope = CallScope(run_id=run_id, workflow=context.job_name, step_key=step_key, asset_key=asset_key,
                          tags=tags)
        if session is None:
            with self.services.ledger.transaction() as own_session:
                self._ensure_tag_budgets(own_session, context, scope, op_tags)
        else:
            self._ensure_tag_budgets(session, context, scope, op_tags)
        self._scopes[(run_id, step_key)] = scope
        return scope

    def _ensure_tag_budgets(self, session: Session, context: StepContext, scope: CallScope,
                            op_tags: dict[str, str]) -> None:
        """Run budgets from the run tag or WFLO_BUDGET_RUN_USD; asset budgets from the asset's op tag."""
        services = self.services
        run_limit = context.run_tags.get(BUDGET_TAG) or self.run_budget_usd
        on_breach = context.run_tags.get(ON_BREACH_TAG, services.settings.budget_on_breach)
        if run_limit is not None or services.settings.budget_run_usd is not None:
            limit = services.parse_usd(run_limit, BUDGET_TAG) if run_limit else services.settings.budget_run_usd
            services.budgets.ensure_limit(session, "run", scope.run_id, limit, on_breach)
        if scope.asset_key and BUDGET_TAG in op_tags:
            services.budgets.ensure_limit(session, "asset", scope.asset_key,
                                          services.parse_usd(op_tags[BUDGET_TAG], BUDGET_TAG), on_breach)

    def start_step(self, context: StepContext) -> None:
        """Open this attempt's ``steps`` row (and the run's, first time) with their events."""
        run_id, step_key, attempt = step_identity(context)
        services = self.services
        with services.ledger.transaction() as session:
            scope = self.scope_for(context, session)
            parent = parent_run_id(context)
            if services.ledger.ensure_run(session, run_id, scope.workflow, tags=dict(context.run_tags),
                                          parent_run_id=parent):
                services.emit(session, RunStarted(run_id=run_id, workflow=scope.workflow,
                                                  tags=dict(context.run_tags), parent_run_id=parent))
            earlier = services.ledger.close_earlier_attempts(session, run_id, step_key, attempt) if attempt else []
            for step in earlier:
                services.emit(session, StepRetried(run_id=run_id, step_key=step_key, attempt=step.attempt,
                                                   asset_key=scope.asset_key,
                                                   error=f"attempt {step.attempt} failed; Dagster retried it"))
            services.ledger.open_step(session, run_id, step_key, attempt, asset_key=scope.asset_key,
                                      tags=dict(scope.tags))
            services.emit(session, StepStarted(run_id=run_id, step_key=step_key, attempt=attempt,
                                               asset_key=scope.asset_key))

    def add_step_metadata(self, context: StepContext) -> None:
        """Attach this step's cost, tokens, calls and cache savings as numeric output metadata."""
        run_id, step_key, _ = step_identity(context)
        context.add_output_metadata(self.step_totals(run_id, step_key).as_metadata())

    def complete(
        self,
        context: StepContext,
        *,
        prompt: str | None = None,
        messages: list[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Send one completion through the gateway and count it toward this step's totals."""
        if (prompt is None) == (messages is None):
            raise ValueError("pass exactly one of prompt= or messages=")
        msgs = list(messages or [Message("user", prompt or "")])
        if system:
            msgs.insert(0, Message("system", system))
        request = LLMRequest(provider=provider or self.default_provider, model=model or self.default_model,
                             messages=tuple(msgs), **params)
        return self.send(context, request)

    def _next_call(self, context: StepContext) -> tuple[int, str]:
        """The call's sequence number within this step attempt, and its ledger idempotency key."""
        run_id, step_key, attempt = step_identity(context)
        with self._lock:
            self._seq[(run_id, step_key, attempt)] += 1
            seq = self._seq[(run_id, step_key, attempt)]
        return seq, f"{run_id}:{step_key}:{attempt}:{seq}"

    def stream(self, context: StepContext, request: LLMRequest) -> Iterator[StreamChunk]:
        """Stream one completion through the gateway; the last chunk carries the full response."""
        run_id, step_key, _ = step_identity(context)
        _, call_key = self._next_call(context)
        yield from self.services.gateway.stream(request, self._call_scope(context), call_key,
                                                on_outcome=lambda outcome: self._count(run_id, step_key, outcome))

    def send(self, context: StepContext, request: LLMRequest) -> LLMResponse:
        run_id, step_key, _ = step_identity(context)
        seq, call_key = self._next_call(context)
        scope = self._call_scope(context)
        settled = SettledResults(CheckpointStore(self.services.ledger))
        reused = settled.recall(run_id=run_id, step_key=step_key, seq=seq, request=request)
        if reused is not None:
            context.log.info(f"call {seq} of {step_key} was answered and paid for earlier in this run's "
                             "chain; reusing that answer (not sent, not charged)")
            return reused
        response, outcome = self.services.gateway.complete(request, scope, call_key)
        self._count(run_id, step_key, outcome)
        settled.remember(run_id=run_id, workflow=scope.workflow, step_key=step_key, seq=seq, request=request,
                         response=response)
        return response

    # ------------------------------------------------------------------ drop-in SDK clients

    def openai_client(self, context: StepContext, **options: Any) -> openai.OpenAI:
        """A real ``openai.OpenAI`` whose every request is held, cached, retried and recorded for this step.

        Give it to any agent framework (pydantic-ai, LangChain/LangGraph, the OpenAI Agents SDK). Options:
        ``api_key``, ``base_url`` (default: settings), ``provider`` (the name calls are priced under).
        """
        return self._dropin_clients().openai(**self._dropin_options(context), **options)

    def async_openai_client(self, context: StepContext, **options: Any) -> openai.AsyncOpenAI:
        """A real ``openai.AsyncOpenAI`` on the same path; calls never block the event loop."""
        return self._dropin_clients().async_openai(**self._dropin_options(context), **options)

    def anthropic_client(self, context: StepContext, **options: Any) -> anthropic.Anthropic:
        """A real ``anthropic.Anthropic`` whose every request goes through the gateway."""
        return self._dropin_clients().anthropic(**self._dropin_options(context), **options)

    def async_anthropic_client(self, context: StepContext, **options: Any) -> anthropic.AsyncAnthropic:
        return self._dropin_clients().async_anthropic(**self._dropin_options(context), **options)

    def _dropin_clients(self) -> DropinClients:
        with self._lock:
            if self._dropin is None:
                self._dropin = DropinClients(self.services.gateway, self.services.settings)
            return self._dropin

    def _dropin_options(self, context: StepContext) -> dict[str, Any]:
        """Scope (sub-agent aware), ledger keys in this step's call sequence, and step totals."""
        run_id, step_key, _ = step_identity(context)
        self.scope_for(context)  # budgets of the run and asset exist before the first call
        return {"scope": lambda: self._call_scope(context), "call_key": lambda: self._next_call(context)[1],
                "on_outcome": lambda outcome: self._count(run_id, step_key, outcome)}

    def _count(self, run_id: str, step_key: str, outcome: CallOutcome) -> None:
        with self._lock:
            self._totals[(run_id, step_key)].add(outcome)
            if outcome.call_id is not None:
                self._last_call[(run_id, step_key)] = outcome.call_id

    @contextmanager
    def sub_agent(self, context: StepContext, name: str) -> Iterator[None]:
        """Attribute the calls made inside to sub-agent ``name`` (tag ``agent=name``), linked to the
        parent's last call; they still roll up to this step and run."""
        run_id, step_key, _ = step_identity(context)
        token = _SUB_AGENT.set((name, self._last_call.get((run_id, step_key))))
        try:
            yield
        finally:
            _SUB_AGENT.reset(token)

    def _call_scope(self, context: StepContext) -> CallScope:
        scope = self.scope_for(context)
        agent = _SUB_AGENT.get()
        if agent is None:
            return scope
        name, parent_call_id = agent
        return replace(scope, tags={**scope.tags, "agent": name}, parent_call_id=parent_call_id)

    def step_totals(self, run_id: str, step_key: str) -> StepTotals:
        with self._lock:
            return self._totals.get((run_id, step_key)) or StepTotals()
