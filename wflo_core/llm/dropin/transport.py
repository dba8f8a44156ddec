"""httpx transports that hand every SDK request to the gateway instead of the network.

The SDK builds its request as usual; the transport reads it into an ``LLMRequest`` (cache key,
upper bound, output limit), calls :meth:`Gateway.complete` / :meth:`Gateway.stream` (or their async
twins), and gives the SDK the upstream answer as the HTTP response it expects: the JSON body, or
the event stream byte for byte. An upstream error the gateway gave up on comes back as that
upstream HTTP answer with ``x-should-retry: false``; a wflo refusal (``BudgetExceeded``) is raised.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace

import httpx2

from wflo_core.budgets import CallScope
from wflo_core.calls import CallOutcome, LLMRequest, LLMResponse
from wflo_core.errors import ProviderError
from wflo_core.llm.dropin.provider import RawChunk, upstream_answer
from wflo_core.llm.dropin.sse import SSE_KEY
from wflo_core.llm.dropin.wire import APPLIED_MAX_TOKENS_TAG, WireRequest, parse_wire, to_request
from wflo_core.llm.gateway import Gateway
from wflo_core.llm.providers.base import StreamChunk

CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


@dataclass
class Route:
    """Where one SDK client's requests go: which gateway, charged to whom, under which keys."""

    gateway: Gateway
    provider: str
    """The provider name calls are priced and recorded under (``openai``, ``anthropic``...)."""
    base_path: str
    """The path of the SDK's base_url (``/v1``); request paths are recorded relative to it."""
    scope: Callable[[], CallScope]
    call_key: Callable[[], str]
    default_max_tokens: int
    on_outcome: Callable[[CallOutcome], None] = field(default=lambda outcome: None)

    def prepare(self, request: httpx2.Request, body: bytes) -> tuple[WireRequest, LLMRequest, CallScope, str]:
        path = request.url.path
        path = path[len(self.base_path):] if self.base_path and path.startswith(self.base_path) else path
        headers = {k: v for k, v in request.headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        wire = parse_wire(path, body, headers, default_max_tokens=self.default_max_tokens)
        scope = self.scope()
        if wire.applied_default is not None:
            scope = replace(scope, tags={**scope.tags, APPLIED_MAX_TOKENS_TAG: str(wire.applied_default)})
        return wire, to_request(wire, self.provider), scope, self.call_key()


def _json_response(response: LLMResponse, outcome: CallOutcome) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "application/json", **_wflo_headers(outcome)},
                           content=json.dumps(response.raw).encode())


def _wflo_headers(outcome: CallOutcome | None) -> dict[str, str]:
    if outcome is None:
        return {}
    return {"x-wflo-cache": "hit" if outcome.cache_hit else "miss", "x-wflo-cost-usd": str(outcome.cost_usd)}


def _error_response(err: ProviderError) -> httpx2.Response | None:
    answer = upstream_answer(err)
    if answer is None:
        return None
    return httpx2.Response(answer.status, headers={**answer.headers, "x-should-retry": "false"}, content=answer.body)


def _sse_bytes(chunk: StreamChunk, sent_raw: bool) -> bytes:
    """What a chunk adds to the SDK's byte stream; a cached or replayed answer replays its recorded events."""
    if isinstance(chunk, RawChunk):
        return chunk.raw
    if chunk.response is not None and not sent_raw:
        return str(chunk.response.raw.get(SSE_KEY, "")).encode()
    return b""


class _SyncEvents(httpx2.SyncByteStream):
    """The SDK's byte stream; closing it closes the gateway's stream (which settled at the answer's usage)."""

    def __init__(self, first: StreamChunk, rest: Iterator[StreamChunk]) -> None:
        self._first, self._rest = first, rest

    def __iter__(self) -> Iterator[bytes]:
        sent_raw = False
        for chunk in _chain(self._first, self._rest):
            data = _sse_bytes(chunk, sent_raw)
            sent_raw = sent_raw or isinstance(chunk, RawChunk)
            if data:
                yield data

    def close(self) -> None:
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


def _chain(first: StreamChunk, rest: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
    yield first
    yield from rest


class _AsyncEvents(httpx2.AsyncByteStream):
    """The async twin of :class:`_SyncEvents`."""

    def __init__(self, first: StreamChunk, rest: AsyncGenerator[StreamChunk, None]) -> None:
        self._first, self._rest = first, rest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent_raw = False
        chunk: StreamChunk | None = self._first
        while chunk is not None:
            data = _sse_bytes(chunk, sent_raw)
            sent_raw = sent_raw or isinstance(chunk, RawChunk)
            if data:
                yield data
            chunk = await anext(self._rest, None)

    async def aclose(self) -> None:
        await self._rest.aclose()


_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class GatewayTransport(httpx2.BaseTransport):
    """For ``openai.OpenAI`` / ``anthropic.Anthropic``: every request is one gateway call."""

    def __init__(self, route: Route) -> None:
        self.route = route

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        wire, llm_request, scope, call_key = self.route.prepare(request, request.read())
        gateway, route = self.route.gateway, self.route
        try:
            if wire.stream:
                chunks = gateway.stream(llm_request, scope, call_key, on_outcome=route.on_outcome)
                first = next(chunks)  # held, sent and answered (or refused) before the SDK sees a status
                return httpx2.Response(200, headers=_SSE_HEADERS, stream=_SyncEvents(first, chunks))
            response, outcome = gateway.complete(llm_request, scope, call_key)
        except ProviderError as err:
            if (answer := _error_response(err)) is not None:
                return answer
            raise
        route.on_outcome(outcome)
        return _json_response(response, outcome)


class AsyncGatewayTransport(httpx2.AsyncBaseTransport):
    """For ``openai.AsyncOpenAI`` / ``anthropic.AsyncAnthropic``; the event loop never blocks on a call."""

    def __init__(self, route: Route) -> None:
        self.route = route

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        wire, llm_request, scope, call_key = self.route.prepare(request, await request.aread())
        gateway, route = self.route.gateway, self.route
        try:
            if wire.stream:
                chunks = gateway.astream(llm_request, scope, call_key, on_outcome=route.on_outcome)
                try:
                    first = await anext(chunks)
                except BaseException:
                    await chunks.aclose()
                    raise
                return httpx2.Response(200, headers=_SSE_HEADERS, stream=_AsyncEvents(first, chunks))
            response, outcome = await gateway.acomplete(llm_request, scope, call_key)
        except ProviderError as err:
            if (answer := _error_response(err)) is not None:
                return answer
            raise
        route.on_outcome(outcome)
        return _json_response(response, outcome)
