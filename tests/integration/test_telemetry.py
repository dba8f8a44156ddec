"""OpenTelemetry GenAI spans: one per call under its step's span under its run's span.

With the SDK's in-memory exporter inside a Dagster run, and over OTLP/HTTP to a receiver this test
starts on loopback, configured only by the standard OTEL_* variables.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select

from wflo_core import telemetry
from wflo_core.budgets import CallScope
from wflo_core.calls import LLMRequest, Message
from wflo_core.config import load_settings
from wflo_core.errors import ProviderRequestRejected
from wflo_core.ledger.models import LLMCall
from wflo_core.services import build_services
from wflo_dagster.decorators import llm_asset
from wflo_dagster.resources.llm import LLMResource

pytestmark = pytest.mark.integration


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch, llm_server):
    for key, value in {"WFLO_LLM_MODE": "live", "WFLO_OPENAI_API_KEY": "sk-test",
                       "WFLO_OPENAI_BASE_URL": llm_server.openai_base_url}.items():
        monkeypatch.setenv(key, value)
    exporter = InMemorySpanExporter()
    telemetry.configure(exporter)
    yield exporter
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    telemetry.configure()  # back to the environment: off


def test_each_call_is_a_genai_span_under_its_step_under_its_run(spans: InMemorySpanExporter, llm_server) -> None:
    llm_server.set_usage(cached_tokens=3)

    @llm_asset()
    def researcher(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
        first = llm.complete(context, prompt="What changed in 2024?", max_tokens=60, temperature=0).text
        llm.complete(context, prompt="What changed in 2024?", max_tokens=60, temperature=0)  # cache hit
        client = llm.openai_client(context, api_key="sk-test", base_url=llm_server.openai_base_url)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sdk call"}])
        llm_server.set_behavior(status=400, times=1)
        with pytest.raises(ProviderRequestRejected):
            llm.complete(context, prompt="rejected", max_tokens=10)
        return first

    result = dg.materialize([researcher], resources={"llm": LLMResource()})
    assert result.success
    services = build_services(load_settings())
    try:
        assert services.close_run(result.run_id, result.job_def.name, "succeeded")
        with services.ledger.transaction() as s:
            calls = list(s.scalars(select(LLMCall).where(LLMCall.status != "failed").order_by(LLMCall.id)))
    finally:
        services.close()

    finished = spans.get_finished_spans()
    run = next(s for s in finished if s.name.startswith("run "))
    step = next(s for s in finished if s.name == "step researcher")
    chats = [s for s in finished if s.name == "chat gpt-4o-mini"]
    assert len(chats) == 4 and len(calls) == 3
    assert {s.context.trace_id for s in finished} == {run.context.trace_id}
    assert step.parent.span_id == run.context.span_id and run.parent is None
    assert all(s.parent.span_id == step.context.span_id for s in chats)
    assert step.start_time <= min(s.start_time for s in chats) and step.end_time >= max(s.end_time for s in chats)

    paid, hit, sdk, rejected = chats
    for span, row in ((paid, calls[0]), (hit, calls[1]), (sdk, calls[2])):
        a: dict[str, Any] = dict(span.attributes)
        assert span.kind == SpanKind.CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == "gpt-4o-mini"
        assert a["gen_ai.usage.input_tokens"] == row.input_tokens > 0
        assert a["gen_ai.usage.output_tokens"] == row.output_tokens > 0
        assert a["gen_ai.usage.cache_read.input_tokens"] == row.cached_input_tokens == 3
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert Decimal(a["wflo.cost_usd"]) == row.cost_usd and Decimal(a["wflo.saved_usd"]) == row.saved_usd
        assert a["wflo.call_key"] == row.idempotency_key
    assert hit.attributes["wflo.cache_hit"] is True and Decimal(hit.attributes["wflo.cost_usd"]) == 0
    assert paid.attributes["wflo.cache_hit"] is False
    assert rejected.status.status_code == StatusCode.ERROR
    assert rejected.attributes["error.type"] == "ProviderRequestRejected"
    assert Decimal(run.attributes["wflo.cost_usd"]) == sum(c.cost_usd for c in calls) > 0


class _Receiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver: keeps every export request it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.exports: list[ExportTraceServiceRequest] = []


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers["content-length"]))
        assert self.path == "/v1/traces" and self.headers["content-type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.exports.append(request)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def test_spans_reach_an_otlp_http_receiver_configured_by_the_standard_variables(
        monkeypatch: pytest.MonkeyPatch, llm_server) -> None:
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.server_address[1]}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "wflo-under-test")
    assert telemetry.configure() is not None  # from the environment alone
    services = build_services(load_settings(llm_mode="live", openai_api_key="sk-test",
                                            openai_base_url=llm_server.openai_base_url))
    try:
        request = LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", "over otlp"),),
                             max_tokens=40)
        services.gateway.complete(request, CallScope(run_id="run-otlp", workflow="wf", step_key="s"), "run-otlp:1")
        telemetry.flush()
    finally:
        services.close()
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        telemetry.configure()
        receiver.shutdown()
        receiver.server_close()

    resource_spans = [rs for export in receiver.exports for rs in export.resource_spans]
    service = {a.key: a.value.string_value for rs in resource_spans for a in rs.resource.attributes}
    assert service["service.name"] == "wflo-under-test"
    [span] = [s for rs in resource_spans for ss in rs.scope_spans for s in ss.spans]
    attributes = {a.key: a.value for a in span.attributes}
    assert span.name == "chat gpt-4o-mini"
    assert attributes["gen_ai.provider.name"].string_value == "openai"
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0
    assert attributes["gen_ai.usage.output_tokens"].int_value > 0
    assert attributes["wflo.run_id"].string_value == "run-otlp"
