"""SDK failures become wflo's provider error categories, with Retry-After and no secrets."""

from __future__ import annotations

import email.utils
import pickle
import socket
import time

import anthropic
import openai
import pytest

from wflo_core.calls import LLMRequest, Message
from wflo_core.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from wflo_core.llm.providers import AnthropicProvider, OpenAIProvider

pytestmark = pytest.mark.integration

KEY = "sk-test-secret-0123456789"
APIS = ["chat", "responses", "messages"]


def make(llm_server, api: str, timeout: float = 5):
    if api == "messages":
        return AnthropicProvider(
            api_key=KEY, base_url=llm_server.base_url, timeout=timeout
        ), "claude-haiku-4-5"
    return OpenAIProvider(api_key=KEY, base_url=llm_server.openai_base_url, timeout=timeout), "gpt-4o-mini"


def call(llm_server, api: str, *, stream: bool = False, timeout: float = 5) -> ProviderError:
    provider, model = make(llm_server, api, timeout)
    request = LLMRequest(provider=provider.name, model=model, api=api, messages=(Message("user", "hi"),))
    try:
        with pytest.raises(ProviderError) as caught:
            if stream:
                list(provider.stream(request))
            else:
                provider.complete(request)
    finally:
        provider.close()
    err = caught.value
    assert KEY not in str(err) and "authorization" not in str(err).lower()
    assert isinstance(err.__cause__, openai.OpenAIError | anthropic.AnthropicError)
    assert err.model == model
    return err


@pytest.mark.parametrize("api", APIS)
def test_429_with_retry_after_seconds_is_rate_limited_and_sent_once(llm_server, api):
    llm_server.set_behavior(status=429, retry_after="7", times=1)

    err = call(llm_server, api)

    assert type(err) is ProviderRateLimited and err.retryable
    assert err.retry_after == 7.0 and err.status_code == 429 and err.billed is False
    assert llm_server.request_count() == 1, "the SDK's own retries must be off"
    assert "retry after 7s" in str(err)


@pytest.mark.parametrize("stream", [False, True])
def test_retry_after_as_http_date(llm_server, stream):
    llm_server.set_behavior(
        status=429, retry_after=email.utils.formatdate(time.time() + 30, usegmt=True), times=1
    )

    err = call(llm_server, "chat", stream=stream)

    assert type(err) is ProviderRateLimited and 27 <= err.retry_after <= 30


def test_429_without_retry_after(llm_server):
    llm_server.set_behavior(status=429, times=1)

    err = call(llm_server, "messages")

    assert type(err) is ProviderRateLimited and err.retry_after is None


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("status", "category", "retryable"),
    [
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (400, ProviderRequestRejected, False),
        (404, ProviderRequestRejected, False),
        (422, ProviderRequestRejected, False),
        (401, ProviderAuthFailed, False),
        (403, ProviderAuthFailed, False),
    ],
)
def test_status_codes_map_to_categories(llm_server, api, status, category, retryable):
    llm_server.set_behavior(status=status, times=1)

    err = call(llm_server, api)

    assert type(err) is category and err.retryable is retryable and err.status_code == status
    assert llm_server.request_count() == 1
    restored = pickle.loads(pickle.dumps(err))
    assert type(restored) is category and restored.status_code == status and str(restored) == str(err)


def test_rejection_explains_the_providers_reason(llm_server):
    llm_server.set_behavior(status=400, times=1)

    assert "fake server answered 400 as instructed" in str(call(llm_server, "chat"))


@pytest.mark.parametrize("api", APIS)
def test_timeout_is_unavailable(llm_server, api):
    llm_server.set_behavior(delay=1.5, times=1)

    err = call(llm_server, api, timeout=0.3)

    assert type(err) is ProviderUnavailable and err.retryable and err.billed is None
    assert "timeout" in str(err)


@pytest.mark.parametrize("api", ["chat", "messages"])
def test_connection_refused_is_unavailable(api):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = type(
        "Closed",
        (),
        {"base_url": f"http://127.0.0.1:{port}", "openai_base_url": f"http://127.0.0.1:{port}/v1"},
    )()

    err = call(closed, api)

    assert type(err) is ProviderUnavailable and err.status_code is None and "connection to" in str(err)


def test_server_recovers_after_the_failing_requests(llm_server):
    llm_server.set_behavior(status=500, times=2)
    call(llm_server, "chat")
    call(llm_server, "chat")

    provider, model = make(llm_server, "chat")
    response = provider.complete(
        LLMRequest(provider="openai", model=model, messages=(Message("user", "ok?"),))
    )
    provider.close()

    assert response.text and llm_server.request_count() == 3


@pytest.mark.parametrize("api", APIS)
def test_an_answer_that_is_not_json_is_unavailable(api):
    """A 2xx whose body is no JSON object (a proxy's HTML page) fails in one line, as retryable with
    unknown billing, instead of handing the gateway an empty answer to price."""
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = b"<html>captive portal</html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    fake = type("Html", (), {"base_url": base, "openai_base_url": f"{base}/v1"})()
    provider, model = make(fake, api)
    request = LLMRequest(provider=provider.name, model=model, api=api, messages=(Message("user", "hi"),))
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            provider.complete(request)
    finally:
        provider.close()
        server.shutdown()
        server.server_close()

    err = caught.value
    assert err.retryable and err.billed is None and err.status_code == 200
    assert "\n" not in str(err) and "HTTP 200" in str(err) and "text/html" in str(err) and KEY not in str(err)
