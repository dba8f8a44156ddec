"""OpenTelemetry spans for runs, steps and LLM calls, with the GenAI semantic-convention attributes.

Every call is one ``CLIENT`` span named ``chat <model>`` carrying ``gen_ai.*`` attributes (provider,
request and response model, input/output/cache/reasoning tokens, finish reasons, ``error.type``) and
its money under ``wflo.*`` (the conventions have no cost attribute yet). A call span sits under its
step's span, which sits under its run's span. Steps run in other processes than their run, so the
ids of run and step spans are derived from the run id and step key: a call's parent is known
wherever it runs, and the step and run spans are emitted when they end with exactly those ids.

Export is off unless the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set;
the OTLP/HTTP exporter then reads the other ``OTEL_EXPORTER_OTLP_*`` variables itself (headers,
timeout, compression), and ``OTEL_SERVICE_NAME`` names the service. ``OTEL_SDK_DISABLED=true`` turns
it off.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from wflo_core.budgets import CallScope
from wflo_core.calls import CallOutcome, LLMRequest, LLMResponse
from wflo_core.telemetry import export_requested

TRACER_NAME = "wflo"
_FORCED: contextvars.ContextVar[tuple[int | None, int] | None] = contextvars.ContextVar("wflo_span_ids",
                                                                                      default=None)
_state_lock = threading.Lock()
_provider: TracerProvider | None = None
_configured = False


class _DerivedIds(RandomIdGenerator):
    """Random ids, except for run and step spans, whose ids follow from what they are."""

    def generate_trace_id(self) -> int:
        forced = _FORCED.get()
        return forced[0] if forced and forced[0] is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _FORCED.get()
        return forced[1] if forced else super().generate_span_id()


def configure(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """(Re)build wflo's tracer provider: with ``exporter`` (synchronous, for tests), else from the
    environment (OTLP over HTTP when an endpoint is set). Returns None when export is off."""
    global _provider, _configured
    with _state_lock:
        if _provider is not None:
            _provider.shutdown()
        _provider, _configured = _build(exporter), True
        return _provider


def _build(exporter: SpanExporter | None) -> TracerProvider | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if exporter is None:
        if not export_requested():
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor: Any = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    name = os.environ.get("OTEL_SERVICE_NAME") or "wflo"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), id_generator=_DerivedIds())
    provider.add_span_processor(processor)
    return provider


def _tracer() -> trace.Tracer | None:
    global _provider, _configured
    if not _configured:
        with _state_lock:
            if not _configured:
                _provider, _configured = _build(None), True
    return _provider.get_tracer(TRACER_NAME) if _provider is not None else None


def flush(timeout_millis: int = 10_000) -> None:
    """Export what is buffered now (a step process may exit right after its last call)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


# ---------------------------------------------------------------------------------- ids


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def run_trace_id(run_id: str) -> int:
    return int.from_bytes(_digest("trace", run_id)[:16], "big") or 1


def run_span_id(run_id: str) -> int:
    return int.from_bytes(_digest("run", run_id)[:8], "big") or 1


def step_span_id(run_id: str, step_key: str) -> int:
    return int.from_bytes(_digest("step", run_id, step_key)[:8], "big") or 1


def _parent(trace_id: int, span_id: int) -> Any:
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(context))


def _ns(when: datetime | None) -> int | None:
    return int(when.timestamp() * 1e9) if when is not None else None


# ---------------------------------------------------------------------------------- run and step spans


def record_run(run_id: str, workflow: str, status: str, started_at: datetime | None, ended_at: datetime | None,
               cost_usd: object) -> None:
    """Emit the run's span (its id follows from the run id, so its steps' spans already point at it)."""
    tracer = _tracer()
    if tracer is None:
        return
    token = _FORCED.set((run_trace_id(run_id), run_span_id(run_id)))
    try:
        span = tracer.start_span(f"run {workflow}", start_time=_ns(started_at), kind=SpanKind.INTERNAL,
                                 attributes={"wflo.run_id": run_id, "wflo.workflow": workflow,
                                             "wflo.run.status": status, "wflo.cost_usd": str(cost_usd)})
    finally:
        _FORCED.reset(token)
    if status != "succeeded":
        span.set_status(Status(StatusCode.ERROR, status))
    span.end(end_time=_ns(ended_at))


def record_step(run_id: str, step_key: str, workflow: str, started_ns: int, *, status: str,
                error: BaseException | None = None, attributes: dict[str, Any] | None = None) -> None:
    """Emit a step's span, child of its run's span, covering ``started_ns`` until now."""
    tracer = _tracer()
    if tracer is None:
        return
    token = _FORCED.set((None, step_span_id(run_id, step_key)))
    try:
        span = tracer.start_span(f"step {step_key}", context=_parent(run_trace_id(run_id), run_span_id(run_id)),
                                 start_time=started_ns, kind=SpanKind.INTERNAL,
                                 attributes={"wflo.run_id": run_id, "wflo.step_key": step_key,
                                             "wflo.workflow": workflow, "wflo.step.status": status,
                                             **(attributes or {})})
    finally:
        _FORCED.reset(token)
    if error is not None:
        span.set_attribute(ERROR_TYPE, type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.end()
    flush()


# ---------------------------------------------------------------------------------- call spans


@contextmanager
def call_span(request: LLMRequest, scope: CallScope, call_key: str) -> Iterator[Callable[..., None]]:
    """One LLM call's span; the caller reports the answer with the yielded ``answered(response, outcome)``."""
    tracer = _tracer()
    if tracer is None:
        yield lambda response, outcome: None
        return
    parent_span = step_span_id(scope.run_id, scope.step_key) if scope.step_key else run_span_id(scope.run_id)
    attributes: dict[str, Any] = {
        gen_ai.GEN_AI_OPERATION_NAME: "chat", gen_ai.GEN_AI_PROVIDER_NAME: request.provider,
        gen_ai.GEN_AI_REQUEST_MODEL: request.model, gen_ai.GEN_AI_REQUEST_MAX_TOKENS: request.max_tokens,
        "wflo.api": request.api, "wflo.call_key": call_key, "wflo.run_id": scope.run_id,
    }
    if request.temperature is not None:
        attributes[gen_ai.GEN_AI_REQUEST_TEMPERATURE] = request.temperature
    if scope.step_key:
        attributes["wflo.step_key"] = scope.step_key
    # Not made current: a stream's span is resumed from other threads, and children need no context.
    span = tracer.start_span(f"chat {request.model}", context=_parent(run_trace_id(scope.run_id), parent_span),
                             kind=SpanKind.CLIENT, attributes=attributes)
    try:
        yield functools.partial(_answered, span)
    except BaseException as err:
        span.set_attribute(ERROR_TYPE, type(err).__name__)
        span.set_status(Status(StatusCode.ERROR, str(err)[:500]))
        raise
    finally:
        span.end()


def _answered(span: trace.Span, response: LLMResponse, outcome: CallOutcome) -> None:
    usage = outcome.usage
    span.set_attributes({
        gen_ai.GEN_AI_RESPONSE_MODEL: response.model, gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
        gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: usage.cached_input_tokens,
        gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: usage.cache_write_tokens,
        gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: usage.reasoning_tokens,
        gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: [response.finish_reason] if response.finish_reason else [],
        "wflo.cost_usd": str(outcome.cost_usd), "wflo.saved_usd": str(outcome.saved_usd),
        "wflo.cache_hit": outcome.cache_hit, "wflo.price_version": outcome.price_version,
    })
    if response.response_id:
        span.set_attribute(gen_ai.GEN_AI_RESPONSE_ID, response.response_id)
