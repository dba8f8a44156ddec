"""The provider behind a drop-in client: forwards the SDK's own request upstream over real HTTP.

The gateway calls it like any provider (no retries here; the gateway retries behind the breaker).
It sends the SDK's JSON body with the output limit the gateway held for, and the SDK's
answer-changing headers plus this client's credentials, to the upstream ``base_url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx2

from wflo_core.calls import LLMRequest, LLMResponse
from wflo_core.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderUnavailable,
)
from wflo_core.llm.dropin.sse import SSE_KEY, StreamReader
from wflo_core.llm.dropin.wire import response_from_json, wire_of, with_output_limit
from wflo_core.llm.providers.base import StreamChunk
from wflo_core.llm.providers.sdk_errors import parse_retry_after

_DETAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class RawChunk(StreamChunk):
    """Bytes of the upstream event stream, handed to the SDK exactly as they arrived."""

    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """An HTTP error answer from upstream, given back to the SDK once the gateway stops retrying."""

    status: int
    headers: dict[str, str]
    body: bytes


_ANSWER_ATTR = "upstream_answer"
"""Where a provider error carries its ``UpstreamAnswer``: set on the instance, it is not one of the error's fields."""


def upstream_answer(err: BaseException) -> UpstreamAnswer | None:
    """The upstream HTTP answer behind a provider error (also through ``RetriesExhausted``), if any."""
    seen: BaseException | None = err
    while seen is not None:
        answer = getattr(seen, _ANSWER_ATTR, None)
        if isinstance(answer, UpstreamAnswer):
            return answer
        seen = seen.__cause__
    return None


class HTTPPassthroughProvider:
    """Sends drop-in requests to ``base_url`` with ``auth_headers``; one per SDK client."""

    def __init__(self, *, name: str, base_url: str, auth_headers: dict[str, str], timeout: float,
                 transport: httpx2.BaseTransport | None = None) -> None:
        self._name = name
        self._auth = auth_headers
        self._client = httpx2.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        self._client.close()

    def complete(self, request: LLMRequest) -> LLMResponse:
        wire = wire_of(request)
        try:
            answer = self._client.post(wire.path, json=with_output_limit(wire, request.max_tokens),
                                       headers=self._headers(wire.headers))
        except httpx2.TransportError as err:
            raise self._transport_error(request, err) from err
        if answer.status_code >= 400:
            raise self._status_error(request, answer.status_code, dict(answer.headers), answer.content)
        return response_from_json(wire.api, self.name, answer.json())

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        wire = wire_of(request)
        reader = StreamReader(wire.api)
        try:
            with self._client.stream("POST", wire.path, json=with_output_limit(wire, request.max_tokens),
                                     headers=self._headers(wire.headers)) as answer:
                if answer.status_code >= 400:
                    raise self._status_error(request, answer.status_code, dict(answer.headers), answer.read())
                answered = False
                for data in answer.iter_raw():
                    reader.feed(data)
                    final = None if answered else reader.answer()
                    if final is None:
                        yield RawChunk(raw=data)
                        continue
                    # The bytes that complete the answer carry it, so it is priced even if the SDK stops here.
                    answered = True
                    response = response_from_json(wire.api, self.name, final)
                    yield RawChunk(raw=data, response=replace(response, raw={**response.raw, SSE_KEY: reader.text}))
        except httpx2.TransportError as err:
            raise self._transport_error(request, err) from err

    def _headers(self, semantic: dict[str, str]) -> dict[str, str]:
        return {**semantic, **self._auth, "content-type": "application/json"}

    def _transport_error(self, request: LLMRequest, err: httpx2.TransportError) -> ProviderError:
        where = f"{self.name} model {request.model!r}"
        if isinstance(err, httpx2.ConnectError | httpx2.ConnectTimeout):
            return ProviderUnavailable(
                f"ProviderUnavailable: could not connect to {where} ({type(err).__name__}); wflo retries this; "
                "if it persists check the client's base_url", provider=self.name, model=request.model,
                status_code=None, billed=False)
        return ProviderUnavailable(
            f"ProviderUnavailable: {where} failed mid-request ({type(err).__name__}); wflo retries this, raise "
            "WFLO_LLM_TIMEOUT_SECONDS if the model is slow", provider=self.name, model=request.model,
            status_code=None, billed=None)

    def _status_error(self, request: LLMRequest, status: int, headers: dict[str, str], body: bytes) -> ProviderError:
        where = f"{self.name} model {request.model!r}"
        fields: dict[str, Any] = {"provider": self.name, "model": request.model, "status_code": status}
        err: ProviderError
        if status == 429:
            retry_after = parse_retry_after(headers)
            err = ProviderRateLimited(f"ProviderRateLimited: {where} returned HTTP 429; wflo retries this",
                                      retry_after=retry_after, billed=False, **fields)
        elif status in (401, 403):
            err = ProviderAuthFailed(f"ProviderAuthFailed: {where} returned HTTP {status}; the API key given to "
                                     "the drop-in client is missing, wrong or lacks access", billed=False, **fields)
        elif status >= 500 or status in (408, 409):
            err = ProviderUnavailable(f"ProviderUnavailable: {where} returned HTTP {status}; wflo retries this",
                                      billed=None, **fields)
        else:
            detail = body.decode("utf-8", "replace")[:_DETAIL_CHARS]
            err = ProviderRequestRejected(f"ProviderRequestRejected: {where} rejected the request with HTTP "
                                          f"{status}: {detail}", billed=False, **fields)
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "retry-after", "retry-after-ms")}
        setattr(err, _ANSWER_ATTR, UpstreamAnswer(status, keep, body))
        return err
