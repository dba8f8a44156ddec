"""OpenAI through the official SDK: chat completions and the Responses API (``request.api``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai

from wflo_core.calls import LLMRequest, LLMResponse, Message, ToolCall
from wflo_core.errors import ProviderRequestRejected, ProviderUnavailable
from wflo_core.llm.providers.base import DEFAULT_TIMEOUT_SECONDS, StreamChunk
from wflo_core.llm.providers.sdk_errors import translate_sdk_error
from wflo_core.llm.providers.sdk_post import post_json
from wflo_core.pricing.usage import (
    usage_from_openai_chat,
    usage_from_openai_responses,
)


class OpenAIProvider:
    """Adapter over ``openai.OpenAI``; the SDK's own retries are off because the gateway retries."""

    #: chat-completions parameter that caps output; OpenAI's reasoning models only accept this one.
    max_tokens_param = "max_completion_tokens"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str = "openai",
    ) -> None:
        self._name = name
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        self._client.close()

    def complete(self, request: LLMRequest) -> LLMResponse:
        try:
            if request.api == "responses":
                return self._from_responses(self._post("/responses", self._responses_params(request), request))
            return self._from_chat(self._post("/chat/completions", self._chat_params(request), request))
        except openai.OpenAIError as err:
            raise translate_sdk_error(err, provider=self.name, model=request.model) from err

    def _post(self, path: str, params: dict[str, Any], request: LLMRequest) -> dict[str, Any]:
        return post_json(self._client, path, params, provider=self.name, model=request.model)

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        try:
            if request.api == "responses":
                yield from self._stream_responses(request)
            else:
                yield from self._stream_chat(request)
        except openai.OpenAIError as err:
            raise translate_sdk_error(err, provider=self.name, model=request.model) from err

    # ------------------------------------------------------------------ chat completions

    def _chat_params(self, request: LLMRequest) -> dict[str, Any]:
        self._reject_unsupported(request, ("chat", "responses"))
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [_chat_message(m) for m in request.messages],
            self.max_tokens_param: request.max_tokens,
        }
        optional = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": list(request.stop) or None,
            "tools": list(request.tools) or None,
            "tool_choice": request.tool_choice,
            "response_format": request.response_format,
            "extra_body": request.extra or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    def _from_chat(self, raw: dict[str, Any]) -> LLMResponse:
        choice = raw["choices"][0]
        message = choice.get("message") or {}
        calls = tuple(
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments", ""))
            for c in message.get("tool_calls") or ()
        )
        return LLMResponse(
            provider=self.name,
            model=raw.get("model", ""),
            text=message.get("content") or "",
            usage=usage_from_openai_chat(raw),
            tool_calls=calls,
            finish_reason=choice.get("finish_reason"),
            response_id=raw.get("id"),
            raw=raw,
        )

    def _stream_chat(self, request: LLMRequest) -> Iterator[StreamChunk]:
        params = self._chat_params(request)
        params.update(stream=True, stream_options={"include_usage": True})
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        last: dict[str, Any] = {}
        finish_reason = None
        usage: dict[str, Any] | None = None
        with self._client.chat.completions.create(**params) as events:
            for event in events:
                chunk = event.to_dict()
                last = chunk
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    finish_reason = choice.get("finish_reason") or finish_reason
                    for call in delta.get("tool_calls") or ():
                        _merge_tool_call_delta(calls.setdefault(call.get("index", 0), {}), call)
                    if delta.get("content"):
                        text.append(delta["content"])
                        yield StreamChunk(text=delta["content"])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        raw = {
            "id": last.get("id"),
            "object": "chat.completion",
            "created": last.get("created"),
            "model": last.get("model", request.model),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage,
        }
        yield StreamChunk(response=self._from_chat(raw))

    # ------------------------------------------------------------------ Responses API

    def _responses_params(self, request: LLMRequest) -> dict[str, Any]:
        if request.stop or request.seed is not None:
            raise ProviderRequestRejected(
                "ProviderRequestRejected: the OpenAI Responses API has no `stop` or `seed`; "
                "drop them or use api='chat'",
                provider=self.name,
                model=request.model,
                status_code=None,
                billed=False,
            )
        params: dict[str, Any] = {
            "model": request.model,
            "input": [item for m in request.messages for item in _responses_items(m)],
            "max_output_tokens": request.max_tokens,
        }
        optional = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "tools": [_responses_tool(t) for t in request.tools] or None,
            "tool_choice": request.tool_choice,
            "text": _responses_text_format(request.response_format),
            "extra_body": request.extra or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    def _from_responses(self, raw: dict[str, Any]) -> LLMResponse:
        text: list[str] = []
        calls: list[ToolCall] = []
        for item in raw.get("output") or ():
            if item.get("type") == "message":
                text.extend(
                    c.get("text", "") for c in item.get("content") or () if c.get("type") == "output_text"
                )
            elif item.get("type") == "function_call":
                calls.append(
                    ToolCall(id=item["call_id"], name=item["name"], arguments=item.get("arguments", ""))
                )
        incomplete = (raw.get("incomplete_details") or {}).get("reason")
        return LLMResponse(
            provider=self.name,
            model=raw.get("model", ""),
            text="".join(text),
            usage=usage_from_openai_responses(raw),
            tool_calls=tuple(calls),
            finish_reason=incomplete or raw.get("status"),
            response_id=raw.get("id"),
            raw=raw,
        )

    def _stream_responses(self, request: LLMRequest) -> Iterator[StreamChunk]:
        final: dict[str, Any] | None = None
        with self._client.responses.create(**self._responses_params(request), stream=True) as events:
            for event in events:
                if event.type == "response.output_text.delta":
                    yield StreamChunk(text=event.delta)
                elif event.type in ("response.completed", "response.incomplete"):
                    final = event.response.to_dict()
        if final is None:
            raise ProviderUnavailable(
                f"ProviderUnavailable: the {self.name} stream for {request.model!r} ended before "
                f"response.completed; wflo retries this",
                provider=self.name,
                model=request.model,
                status_code=None,
                billed=None,
            )
        yield StreamChunk(response=self._from_responses(final))

    def _reject_unsupported(self, request: LLMRequest, apis: tuple[str, ...]) -> None:
        if request.api not in apis:
            raise ProviderRequestRejected(
                f"ProviderRequestRejected: provider {self.name!r} does not speak api={request.api!r}; "
                f"use one of {', '.join(apis)}",
                provider=self.name,
                model=request.model,
                status_code=None,
                billed=False,
            )


def _chat_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def _merge_tool_call_delta(acc: dict[str, Any], delta: dict[str, Any]) -> None:
    function = delta.get("function") or {}
    acc.setdefault("type", "function")
    acc.setdefault("function", {"name": "", "arguments": ""})
    if delta.get("id"):
        acc["id"] = delta["id"]
    if function.get("name"):
        acc["function"]["name"] += function["name"]
    if function.get("arguments"):
        acc["function"]["arguments"] += function["arguments"]


def _responses_items(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id, "output": message.content}]
    items: list[dict[str, Any]] = []
    if message.content or not message.tool_calls:
        items.append({"role": message.role, "content": message.content})
    items.extend(
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
        for c in message.tool_calls
    )
    return items


def _responses_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Chat-style ``{"type": "function", "function": {...}}`` to the Responses API's flat form."""
    if tool.get("type") == "function" and "function" in tool:
        return {"type": "function", **tool["function"]}
    return tool


def _responses_text_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if response_format.get("type") == "json_schema" and "json_schema" in response_format:
        return {"format": {"type": "json_schema", **response_format["json_schema"]}}
    return {"format": response_format}
