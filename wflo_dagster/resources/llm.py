"""``LLMResource``: the gateway for Dagster steps. Config and lifecycle here; the rules in ``wflo_core.steps``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from wflo_core.calls import LLMRequest, LLMResponse, Message
from wflo_core.errors import ConfigError
from wflo_core.keys import BUDGET_TAG, PARENT_RUN_TAG
from wflo_core.ledger.rollups import Dimension, RollupRow, cost_rollup
from wflo_core.llm.providers.base import StreamChunk
from wflo_core.money import parse_usd
from wflo_core.services import WfloServices, release_services
from wflo_core.steps.recorder import BudgetDefaults, StepInfo, StepRecorder
from wflo_core.steps.writer import unwritten
from wflo_dagster.resources.wflo import WfloResource, acquire

if TYPE_CHECKING:
    import anthropic
    import openai

    from wflo_core.llm.dropin import DropinClients  # on first use: it loads httpx2 and the SDK adapters

StepContext = dg.AssetExecutionContext | dg.OpExecutionContext
LLM_RESOURCE_KEY = "llm"
"""The resource key wflo's steps, hooks and helpers expect the ``LLMResource`` under."""


def step_identity(context: StepContext) -> tuple[str, str, int]:
    """(run id, step key, attempt) of the step this context belongs to."""
    step_key = context.get_step_execution_context().step.key
    return context.run_id, step_key, context.retry_number


def workflow_name(context: StepContext) -> str:
    """The job's name; for Dagster's implicit asset jobs ("Materialize" in the UI, ``dg launch --assets``,
    ``materialize([...])``) the asset group's, so the ledger never lumps such runs under ``__ASSET_JOB``."""
    job = context.job_name
    if not job.startswith("__") or not context.has_assets_def:
        return job
    groups = {context.assets_def.group_names_by_key.get(key, "default") for key in context.assets_def.keys}
    return "assets:" + ",".join(sorted(groups))


def step_info(context: StepContext) -> StepInfo:
    """The step as plain values for the core's step recorder."""
    run_id, step_key, attempt = step_identity(context)
    return StepInfo(
        run_id=run_id, step_key=step_key, workflow=workflow_name(context), attempt=attempt,
        asset_key=context.asset_key.to_user_string() if context.has_assets_def else None,
        run_tags=dict(context.run_tags), op_tags=dict(context.op_def.tags or {}),
        # an approved continuation's tag, or Dagster's re-execution parent
        parent_run_id=context.run_tags.get(PARENT_RUN_TAG) or context.dagster_run.parent_run_id,
        partition_key=context.partition_key if context.has_partition_key else None,
    )


def services_of(context: StepContext) -> WfloServices:
    """The services of the step's ``llm`` resource (for wflo's own step helpers: gates, checkpoints...)."""
    llm: LLMResource = getattr(context.resources, LLM_RESOURCE_KEY)
    return llm._wflo_services


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
        default=None, description="auto, replay, live or record; unset = WFLO_LLM_MODE (default auto: live "
        "where the provider's key is set, recorded answers elsewhere)."
    )
    cassette_path: str | None = Field(default=None, description="Cassette for replay/record mode.")
    run_budget_usd: str | None = Field(
        default=None, description="Limit for each run using this resource, e.g. '2.50'. A run's "
        "'wflo/budget_usd' tag wins; unset = WFLO_BUDGET_RUN_USD (or no run budget).")
    wflo: WfloResource | None = Field(default=None, description="Ledger, cache and provider settings.")

    _services: WfloServices | None = PrivateAttr(default=None)
    _dropin: DropinClients | None = PrivateAttr(default=None)
    _recorders: dict[tuple[str, str], StepRecorder] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._services = acquire(self.wflo, llm_mode=self.llm_mode, cassette_path=self.cassette_path)
        if context.dagster_run is not None:  # a run's step: its publish on the way out
            self._services.prepare_relay()  # connects to Kafka while the step runs

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._dropin is not None:
            self._dropin.close()
            self._dropin = None
        if self._services is not None:
            for err in self._services.step_writer.flush():  # this run's step rows, before their events go out
                context.log.warning(unwritten(err))
            self._services.relay_events()  # in-step best effort; the relay sensor does the rest
            release_services(self._services)
            self._services = None

    # ------------------------------------------------------------------ the user's verbs

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
            raise ConfigError("pass exactly one of prompt= or messages= to llm.complete")
        msgs = list(messages or [Message("user", prompt or "")])
        if system:
            msgs.insert(0, Message("system", system))
        request = LLMRequest(provider=provider or self.default_provider, model=model or self.default_model,
                             messages=tuple(msgs), **params)
        return self.send(context, request)

    def send(self, context: StepContext, request: LLMRequest) -> LLMResponse:
        """Send a prepared :class:`LLMRequest`; an answer this run's chain already paid for is reused."""
        return self._recorder(context).complete(request, on_reuse=context.log.info)

    def stream(self, context: StepContext, request: LLMRequest) -> Iterator[StreamChunk]:
        """Stream one completion through the gateway; the last chunk carries the full response."""
        yield from self._recorder(context).stream(request, on_reuse=context.log.info)

    @contextmanager
    def sub_agent(self, context: StepContext, name: str) -> Iterator[None]:
        """Attribute the calls made inside to sub-agent ``name`` (tag ``agent=name``), linked to the
        parent's last call; they still roll up to this step and run."""
        with self._recorder(context).sub_agent(name):
            yield

    def openai_client(self, context: StepContext, **options: Any) -> openai.OpenAI:
        """A real ``openai.OpenAI`` whose every request is held, cached, retried and recorded for this step.

        Give it to any agent framework (pydantic-ai, LangChain/LangGraph, the OpenAI Agents SDK). Options:
        ``api_key`` and ``base_url`` (default: settings), ``provider`` (the name calls are priced under).
        """
        return self._dropin_clients().openai(**self._recorder(context).sdk_hooks(), **options)

    def async_openai_client(self, context: StepContext, **options: Any) -> openai.AsyncOpenAI:
        """A real ``openai.AsyncOpenAI`` on the same path; its calls never block the event loop."""
        return self._dropin_clients().async_openai(**self._recorder(context).sdk_hooks(), **options)

    def anthropic_client(self, context: StepContext, **options: Any) -> anthropic.Anthropic:
        """A real ``anthropic.Anthropic`` whose every request goes through the gateway."""
        return self._dropin_clients().anthropic(**self._recorder(context).sdk_hooks(), **options)

    def async_anthropic_client(self, context: StepContext, **options: Any) -> anthropic.AsyncAnthropic:
        """A real ``anthropic.AsyncAnthropic`` on the same path."""
        return self._dropin_clients().async_anthropic(**self._recorder(context).sdk_hooks(), **options)

    def run_costs(self, context: StepContext, by: Dimension = "step") -> list[RollupRow]:
        """This run's cost so far from the ledger, rolled up ``by`` step, model, asset..."""
        with self._wflo_services.ledger.transaction() as session:
            return cost_rollup(session, by, run_id=context.run_id)

    # ------------------------------------------------------------------ plumbing for wflo_dagster

    @property
    def _wflo_services(self) -> WfloServices:
        if self._services is None:  # used outside a run (direct invocation in tests)
            self._services = acquire(self.wflo, llm_mode=self.llm_mode, cassette_path=self.cassette_path)
        return self._services

    def _dropin_clients(self) -> DropinClients:
        from wflo_core.llm.dropin import DropinClients

        with self._lock:
            if self._dropin is None:
                self._dropin = DropinClients(self._wflo_services.gateway, self._wflo_services.settings)
            return self._dropin

    def _recorder(self, context: StepContext) -> StepRecorder:
        run_id, step_key, _ = step_identity(context)
        with self._lock:
            recorder = self._recorders.get((run_id, step_key))
            if recorder is None:
                services = self._wflo_services
                settings = services.settings
                run_limit = (parse_usd(self.run_budget_usd, f"LLMResource.run_budget_usd ({BUDGET_TAG})")
                             if self.run_budget_usd else None)
                recorder = StepRecorder(
                    step_info(context), ledger=services.ledger, budgets=services.budgets,
                    gateway=services.gateway, record_event=services.record_event,
                    settled=services.settled,
                    defaults=BudgetDefaults(run_limit, settings.budget_run_usd, settings.budget_on_breach),
                    writer=services.step_writer)
                self._recorders[(run_id, step_key)] = recorder
            return recorder

    def _open_step(self, context: StepContext) -> StepRecorder:
        recorder = self._recorder(context)
        recorder.open(step_info(context))
        return recorder

    def _finished_step(self, run_id: str, step_key: str) -> StepRecorder | None:
        with self._lock:
            return self._recorders.get((run_id, step_key))
