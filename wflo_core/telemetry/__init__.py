"""OpenTelemetry GenAI spans for every LLM call, under step and run spans; export is off by default.

The names here are cheap to import and cheap to call while export is off: OpenTelemetry (half a
second of imports) is loaded only once export is on, from the environment or ``configure()``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from wflo_core.budgets import CallScope
    from wflo_core.calls import CallOutcome, LLMRequest, LLMResponse

T = TypeVar("T")
SPANS = "wflo_core.telemetry.spans"


def export_requested() -> bool:
    """Whether the environment turns export on: an OTLP endpoint set, the SDK not disabled."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(endpoint) and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


def _spans() -> ModuleType | None:
    """The OpenTelemetry side, if export may be on: configured already, or requested by the environment."""
    loaded = sys.modules.get(SPANS)
    if loaded is not None or not export_requested():
        return loaded
    from wflo_core.telemetry import spans

    return spans


def configure(exporter: SpanExporter | None = None) -> TracerProvider | None:
    """(Re)build wflo's tracer provider: with ``exporter`` (synchronous, for tests), else from the
    environment (OTLP over HTTP when an endpoint is set). Returns None when export is off."""
    from wflo_core.telemetry import spans

    return spans.configure(exporter)


def flush(timeout_millis: int = 10_000) -> None:
    """Export what is buffered now (a step process may exit right after its last call)."""
    if (spans := sys.modules.get(SPANS)) is not None:
        spans.flush(timeout_millis)


def record_run(run_id: str, workflow: str, status: str, started_at: datetime | None, ended_at: datetime | None,
               cost_usd: object) -> None:
    """Emit the run's span (its id follows from the run id, so its steps' spans already point at it)."""
    if (spans := _spans()) is not None:
        spans.record_run(run_id, workflow, status, started_at, ended_at, cost_usd)


def record_step(run_id: str, step_key: str, workflow: str, started_ns: int, *, status: str,
                error: BaseException | None = None, attributes: dict[str, Any] | None = None) -> None:
    """Emit a step's span, child of its run's span, covering ``started_ns`` until now."""
    if (spans := _spans()) is not None:
        spans.record_step(run_id, step_key, workflow, started_ns, status=status, error=error, attributes=attributes)


def traced_complete(
    method: Callable[..., tuple[LLMResponse, CallOutcome]],
) -> Callable[..., tuple[LLMResponse, CallOutcome]]:
    """Decorates ``Gateway.complete``: the call, cache hit or refusal is one span."""

    @functools.wraps(method)
    def complete(self: Any, request: LLMRequest, scope: CallScope, call_key: str,
                 *args: Any, **kwargs: Any) -> tuple[LLMResponse, CallOutcome]:
        if (spans := _spans()) is None:
            return method(self, request, scope, call_key, *args, **kwargs)
        with spans.call_span(request, scope, call_key) as answered:
            response, outcome = method(self, request, scope, call_key, *args, **kwargs)
            answered(response, outcome)
            return response, outcome

    return complete


def traced_stream(method: Callable[..., Iterator[T]]) -> Callable[..., Generator[T, None, None]]:
    """Decorates ``Gateway.stream``: the span lasts from the first chunk asked for to the stream's end."""

    @functools.wraps(method)
    def stream(self: Any, request: LLMRequest, scope: CallScope, call_key: str,
               on_outcome: Callable[[CallOutcome], None] | None = None, **kwargs: Any) -> Generator[T, None, None]:
        if (spans := _spans()) is None:
            yield from method(self, request, scope, call_key, on_outcome, **kwargs)
            return
        with spans.call_span(request, scope, call_key) as answered:
            final: list[LLMResponse] = []

            def settled(outcome: CallOutcome) -> None:
                if final:
                    answered(final[-1], outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

            for chunk in method(self, request, scope, call_key, settled, **kwargs):
                response = getattr(chunk, "response", None)
                if response is not None:
                    final.append(response)
                yield chunk

    return stream


__all__ = ["configure", "flush", "record_run", "record_step", "traced_complete", "traced_stream"]
