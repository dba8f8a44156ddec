"""Anthropic's messages API through the official SDK, with tools translated from OpenAI form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic

from wflo_core.calls import LLMRequest, LLMResponse, Message, ToolCall
from wflo_core.errors import ProviderRequestRejected
from wflo_core.llm.providers.base import DEFAULT_TIMEOUT_SECONDS, StreamChunk
from wflo_core.llm.providers.sdk_errors import translate_sdk_error
from wflo_core.llm.providers.sdk_post import post_json
from wflo_core.pricing.usage import usage_from_anthropic


class AnthropicProvider:
    """Adapter over ``anthropic.Anthropic``; the SDK's own retries are off because the gateway retries."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str = "anthropic",
    ) -> None:
        self._name = name
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        self._client.close()

    def complete(self, request: LLMRequest) -> LLMResponse:
        try:
            message = post_json(self._client, "/v1/messages", self._params(request), provider=self.name,
                                model=request.model)
        except anthropic.AnthropicError as err:
            raise translate_sdk_error(err, provider=self.name, model=request.model) from err
        return self._from_message(message)

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        try:
            with self._client.messages.stream(**self._params(request)) as events:
                for event in events:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield StreamChunk(text=event.delta.text)
                final = events.get_final_message().to_dict()
        except anthropic.AnthropicError as err:
            raise translate_sdk_error(err, provider=self.name, model=request.model) from err
        yield StreamChunk(response=self._from_message(final))

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        if request.api not in ("messages", "chat"):
            raise self._rejected(
                request, f"speaks the messages API, not api={request.api!r}; use api='messages'"
            )
        if request.response_format is not None:
            raise self._rejected(
                request, "has no response_format; describe the format in the prompt or use a tool"
            )
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": _messages(request.messages),
        }
        sampling = {"temperature": request.temperature, "top_p": request.top_p}
        extra_body = {k: v for k, v in sampling.items() if v is not None} | request.extra
        optional = {
            "system": system or None,
            "stop_sequences": list(request.stop) or None,
            "tools": [_tool(t) for t in request.tools] or None,
            "tool_choice": _tool_choice(request.tool_choice),
            "extra_body": extra_body or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    def _from_message(self, raw: dict[str, Any]) -> LLMResponse:
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in raw.get("content") or ():
            if block.get("type") == "text":
                text.append(block.get("text", ""))
            elif block.get("type") == "tool_use":
                arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
                calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
        return LLMResponse(
            provider=self.name,
            model=raw.get("model", ""),
            text="".join(text),
            usage=usage_from_anthropic(raw),
            tool_calls=tuple(calls),
            finish_reason=raw.get("stop_reason"),
            response_id=raw.get("id"),
            raw=raw,
        )

    def _rejected(self, request: LLMRequest, why: str) -> ProviderRequestRejected:
        return ProviderRequestRejected(
            f"ProviderRequestRejected: Anthropic {why}",
            provider=self.name,
            model=request.model,
            status_code=None,
            billed=False,
        )


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Anthropic wants alternating user/assistant turns: tool results are user content blocks."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    blocks.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments or "{}")}
        for c in message.tool_calls
    )
    return blocks


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """OpenAI function-tool JSON to Anthropic's ``{name, description, input_schema}``."""
    if tool.get("type") != "function" or "function" not in tool:
        return tool
    function = tool["function"]
    out = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object"}}
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: str | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}
