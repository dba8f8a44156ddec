"""The three wire formats a drop-in client speaks, turned into an ``LLMRequest`` and back.

The SDK's JSON body stays the request that is sent (the provider forwards it byte for byte apart
from the output limit); the ``LLMRequest`` built from it is what the gateway prices, holds, caches
and records. Its bound is safe without a tokenizer: every token is at least one UTF-8 byte of the
body, so the body's size bounds the prompt, and the output limit bounds the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wflo_core.calls import Api, LLMRequest, LLMResponse, Message, ToolCall
from wflo_core.errors import ConfigError, UsageInvalid
from wflo_core.pricing.usage import usage_from_anthropic, usage_from_openai_chat, usage_from_openai_responses

DROPIN_KEY = "wflo/dropin"
"""``LLMRequest.extra`` key holding the wire request: API path, JSON body and output-changing headers."""
APPLIED_MAX_TOKENS_TAG = "max_tokens_default"
"""Ledger tag set when wflo gave a request with no output limit the configured default."""
SEMANTIC_HEADERS = ("anthropic-version", "anthropic-beta", "openai-beta")
"""Headers that change the answer (so they are part of the cache key); credentials never are."""
IMAGE_TOKEN_ALLOWANCE = 2_000
"""Tokens held per image given by URL (its bytes are not in the body); above any provider's per-image cost."""

_PATHS: dict[str, Api] = {"/chat/completions": "chat", "/responses": "responses", "/messages": "messages"}
_LIMIT_FIELDS = {"chat": ("max_completion_tokens", "max_tokens"), "responses": ("max_output_tokens",),
                 "messages": ("max_tokens",)}
_IMAGE_PARTS = ("image_url", "input_image", "image")
_FILE_PARTS = ("file", "input_file", "document")


@dataclass(frozen=True, slots=True)
class WireRequest:
    """What the SDK sent, after wflo applied its output limit."""

    api: Api
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    applied_default: int | None
    """The default output limit wflo added, or None when the SDK set one."""

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def api_for(path: str) -> Api | None:
    """The API a request path belongs to (``/v1/chat/completions`` → chat), or None if wflo does not budget it."""
    return next((api for suffix, api in _PATHS.items() if path.rstrip("/").endswith(suffix)), None)


def parse_wire(path: str, body: bytes, headers: dict[str, str], *, default_max_tokens: int) -> WireRequest:
    """Read the SDK's request; a request without an output limit gets ``default_max_tokens``."""
    api = api_for(path)
    if api is None:
        raise ConfigError(f"wflo's drop-in client cannot budget {path}: only chat completions, the "
                          "Responses API and Anthropic messages are priced; call this endpoint with a plain SDK client")
    try:
        data = json.loads(body or b"{}")
    except ValueError as err:
        raise ConfigError(f"the SDK sent a body that is not JSON to {path}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise ConfigError(f"the request to {path} names no model; pass model= to the SDK call")
    applied = None
    if not any(isinstance(data.get(f), int) for f in _LIMIT_FIELDS[api]):
        data[_LIMIT_FIELDS[api][0]] = applied = default_max_tokens
    if api == "chat" and data.get("stream"):
        # Usage arrives only in the last chunk, and only when asked for: without it a stream cannot be priced.
        data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
    semantic = {k: v for k, v in ((k.lower(), v) for k, v in headers.items()) if k in SEMANTIC_HEADERS}
    return WireRequest(api, path, data, semantic, applied)


def output_limit(wire: WireRequest) -> int:
    """The most output tokens the request can be billed for (all ``n`` choices together)."""
    body = wire.body
    limit: int = next(body[f] for f in _LIMIT_FIELDS[wire.api] if isinstance(body.get(f), int))
    choices = body.get("n") or 1
    if not isinstance(choices, int) or choices < 1:
        raise ConfigError(f"n must be a positive integer, got {choices!r}")
    return limit * choices


def with_output_limit(wire: WireRequest, max_tokens: int) -> dict[str, Any]:
    """The body to send when the gateway settled on ``max_tokens`` for all choices together."""
    body = dict(wire.body)
    field = next(f for f in _LIMIT_FIELDS[wire.api] if isinstance(body.get(f), int))
    body[field] = max(1, max_tokens // (body.get("n") or 1))
    return body


def to_request(wire: WireRequest, provider: str) -> LLMRequest:
    """The request the gateway prices and caches: the whole body is its prompt, for a safe bound."""
    body = wire.body
    _refuse_unbounded(wire)
    limit_fields = _LIMIT_FIELDS[wire.api]
    prompt = {k: v for k, v in body.items() if k not in limit_fields and k != "tools"}
    text = json.dumps(prompt, ensure_ascii=False, separators=(",", ":"))
    images = sum(text.count(f'"type":"{part}"') for part in _IMAGE_PARTS)
    messages = [Message("user", text)]
    if images:
        messages.append(Message("user", "." * IMAGE_TOKEN_ALLOWANCE * images))
    return LLMRequest(
        provider=provider, model=body["model"], messages=tuple(messages), max_tokens=output_limit(wire),
        temperature=body.get("temperature"), seed=body.get("seed"), tools=tuple(body.get("tools") or ()),
        api=wire.api, extra={DROPIN_KEY: {"path": wire.path, "body": body, "headers": wire.headers}},
    )


def wire_of(request: LLMRequest) -> WireRequest:
    """The wire request inside an ``LLMRequest`` built by :func:`to_request`."""
    data = request.extra.get(DROPIN_KEY)
    if not isinstance(data, dict):
        raise ConfigError("this request did not come from a drop-in client; send it with llm.complete(...)")
    path = data["path"]
    return WireRequest(api_for(path) or request.api, path, dict(data["body"]), dict(data["headers"]), None)


def _refuse_unbounded(wire: WireRequest) -> None:
    """Hosted tools and file inputs cost what the body does not show: refuse them rather than under-hold."""
    for tool in wire.body.get("tools") or ():
        kind = tool.get("type", "function") if isinstance(tool, dict) else "?"
        if kind not in ("function", "custom") and not (wire.api == "messages" and "input_schema" in tool):
            raise ConfigError(f"tool type {kind!r} is priced by the provider per use, which wflo cannot bound "
                              "before the call; use function tools with the drop-in client")
    text = json.dumps(wire.body.get("messages") or wire.body.get("input") or [])
    if any(f'"type": "{part}"' in text for part in _FILE_PARTS):
        raise ConfigError("file inputs are priced by their pages, which wflo cannot bound before the call; "
                          "send the file's text instead")


# ---------------------------------------------------------------------------------- answers


def response_from_json(api: Api, provider: str, raw: dict[str, Any]) -> LLMResponse:
    """An ``LLMResponse`` (text, tool calls, billed usage) from a provider's JSON answer."""
    try:
        if api == "chat":
            return _from_chat(provider, raw)
        if api == "responses":
            return _from_responses(provider, raw)
        return _from_messages(provider, raw)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise UsageInvalid(f"the {provider} answer for {raw.get('model')!r} has no readable usage ({err}); "
                           "the provider or proxy must report usage") from err


def _from_chat(provider: str, raw: dict[str, Any]) -> LLMResponse:
    choice = (raw.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = tuple(ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "")
                  for c in message.get("tool_calls") or ())
    return LLMResponse(provider, raw.get("model", ""), message.get("content") or "", usage_from_openai_chat(raw),
                       calls, choice.get("finish_reason"), raw.get("id"), raw)


def _from_responses(provider: str, raw: dict[str, Any]) -> LLMResponse:
    text, calls = [], []
    for item in raw.get("output") or ():
        if item.get("type") == "message":
            text += [c.get("text", "") for c in item.get("content") or () if c.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            calls.append(ToolCall(item["call_id"], item["name"], item.get("arguments") or ""))
    finish = (raw.get("incomplete_details") or {}).get("reason") or raw.get("status")
    return LLMResponse(provider, raw.get("model", ""), "".join(text), usage_from_openai_responses(raw),
                       tuple(calls), finish, raw.get("id"), raw)


def _from_messages(provider: str, raw: dict[str, Any]) -> LLMResponse:
    text, calls = [], []
    for block in raw.get("content") or ():
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(block["id"], block["name"], json.dumps(block.get("input") or {})))
    return LLMResponse(provider, raw.get("model", ""), "".join(text), usage_from_anthropic(raw), tuple(calls),
                       raw.get("stop_reason"), raw.get("id"), raw)
