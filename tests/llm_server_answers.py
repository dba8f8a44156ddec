"""What the fake LLM server answers: derived from the request, rendered per API (JSON or SSE).

Same request, same answer. Token counts are about four characters a token plus per-message
overhead, like the real tokenizers on English text; ``UsageExtras`` adds prompt-cache and
reasoning tokens when a test asks for them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

CREATED = 1_700_000_000


@dataclass
class UsageExtras:
    """Extra usage reported on every answer: prompt-cache and reasoning tokens."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    padding_tokens: int = 0
    """Output tokens added to every answer beyond ``max_tokens``: a server that ignores the limit."""
    model_alias: str = ""
    """The model name answers report (a dated snapshot of the requested one, as OpenAI does)."""
    tool_rounds: int = 1
    """With tools offered, ask for a tool call until the conversation holds this many tool results."""


def tokens(text: str) -> int:
    """About four characters a token, like the real tokenizers on English text."""
    return max(1, math.ceil(len(text) / 4))


@dataclass
class Answer:
    """The provider-neutral answer; each API renders it in its own JSON."""

    key: str
    model: str
    text: str
    tool: tuple[str, str, str] | None  # (call id, name, arguments JSON)
    input_tokens: int
    output_tokens: int
    truncated: bool
    extras: UsageExtras


def _answer(
    model: str,
    prompt: list[str],
    last_is_tool_result: bool,
    tool_results: int,
    tools: list[dict[str, Any]],
    tool_choice: Any,
    max_tokens: int,
    extras: UsageExtras,
    body: dict[str, Any],
) -> Answer:
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    last = prompt[-1] if prompt else ""
    input_tokens = sum(tokens(p) + 4 for p in prompt) + sum(tokens(json.dumps(t)) for t in tools)
    tool = None
    more_rounds = not last_is_tool_result or tool_results < extras.tool_rounds
    if tools and tool_choice not in ("none", {"type": "none"}) and more_rounds:
        name, schema = tools[0]
        arg = next(iter((schema or {}).get("properties") or {"query": None}))
        tool = (f"call_{key[:12]}", name, json.dumps({arg: last[:60]}, separators=(",", ":")))
        text = ""
    elif last_is_tool_result:
        text = f"Based on the tool result, here is the answer ({key[:6]}): {last[:120]}"
    else:
        text = f"Answer from {model} ({key[:6]}) to: {last[:160]}"
    output_tokens = tokens(text + (tool[2] if tool else "")) + extras.reasoning_tokens
    truncated = output_tokens > max_tokens
    if truncated:
        text = text[: max(0, (max_tokens - extras.reasoning_tokens) * 4)]
        output_tokens = max_tokens
    if extras.padding_tokens:
        text += " pad" * extras.padding_tokens
        output_tokens += extras.padding_tokens
    return Answer(key, extras.model_alias or model, text, tool, input_tokens, output_tokens, truncated, extras)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, dict):
            parts.append(str(block.get("text") or block.get("output") or _text_of(block.get("content"))))
    return " ".join(p for p in parts if p)


def chat_answer(body: dict[str, Any], extras: UsageExtras) -> Answer:
    messages = body.get("messages") or []
    tools = [(t["function"]["name"], t["function"].get("parameters")) for t in body.get("tools") or ()]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
    return _answer(
        body["model"],
        [_text_of(m.get("content")) for m in messages],
        bool(messages) and messages[-1].get("role") == "tool",
        sum(m.get("role") == "tool" for m in messages),
        tools,
        body.get("tool_choice"),
        max_tokens,
        extras,
        body,
    )


def responses_answer(body: dict[str, Any], extras: UsageExtras) -> Answer:
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    prompt = ([body["instructions"]] if body.get("instructions") else []) + [
        _text_of(i.get("content", i.get("output", i.get("arguments", "")))) for i in items
    ]
    tools = [(t["name"], t.get("parameters")) for t in body.get("tools") or () if t.get("type") == "function"]
    last_is_tool = bool(items) and items[-1].get("type") == "function_call_output"
    return _answer(
        body["model"],
        prompt,
        last_is_tool,
        sum(i.get("type") == "function_call_output" for i in items),
        tools,
        body.get("tool_choice"),
        body.get("max_output_tokens") or 4096,
        extras,
        body,
    )


def anthropic_answer(body: dict[str, Any], extras: UsageExtras) -> Answer:
    messages = body.get("messages") or []
    prompt = ([_text_of(body["system"])] if body.get("system") else []) + [
        _text_of(m.get("content")) for m in messages
    ]
    last = messages[-1].get("content") if messages else ""
    last_is_tool = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    tools = [(t["name"], t.get("input_schema")) for t in body.get("tools") or ()]
    results = sum(isinstance(m.get("content"), list) and sum(isinstance(b, dict) and b.get("type") == "tool_result"
                                                             for b in m["content"]) for m in messages)
    return _answer(
        body["model"], prompt, last_is_tool, results, tools, body.get("tool_choice"), body["max_tokens"], extras, body
    )


def chat_json(a: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None}
    if a.tool:
        message["tool_calls"] = [
            {"id": a.tool[0], "type": "function", "function": {"name": a.tool[1], "arguments": a.tool[2]}}
        ]
    finish = "length" if a.truncated else "tool_calls" if a.tool else "stop"
    return {
        "id": f"chatcmpl-{a.key}",
        "object": "chat.completion",
        "created": CREATED,
        "model": a.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _chat_usage(a),
        "system_fingerprint": "fp_wflo_test",
    }


def _chat_usage(a: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": min(a.extras.cached_tokens, a.input_tokens),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": a.extras.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_stream(a: Answer, include_usage: bool) -> list[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{a.key}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": a.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in _pieces(a.text)]
    if a.tool:
        call_id, name, arguments = a.tool
        half = len(arguments) // 2
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments[:half]},
                        }
                    ]
                }
            )
        )
        events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}))
    events.append(chunk({}, chat_json(a)["choices"][0]["finish_reason"]))
    if include_usage:
        events.append({**chunk({}), "choices": [], "usage": _chat_usage(a)})
    return [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]


def responses_json(a: Answer) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if a.text:
        output.append(
            {
                "type": "message",
                "id": f"msg_{a.key}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": a.text, "annotations": []}],
            }
        )
    if a.tool:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{a.key}",
                "call_id": a.tool[0],
                "name": a.tool[1],
                "arguments": a.tool[2],
                "status": "completed",
            }
        )
    return {
        "id": f"resp_{a.key}",
        "object": "response",
        "created_at": CREATED,
        "model": a.model,
        "status": "incomplete" if a.truncated else "completed",
        "output": output,
        "incomplete_details": {"reason": "max_output_tokens"} if a.truncated else None,
        "error": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": a.input_tokens,
            "input_tokens_details": {"cached_tokens": min(a.extras.cached_tokens, a.input_tokens)},
            "output_tokens": a.output_tokens,
            "output_tokens_details": {"reasoning_tokens": a.extras.reasoning_tokens},
            "total_tokens": a.input_tokens + a.output_tokens,
        },
    }


def responses_stream(a: Answer) -> list[str]:
    """The event sequence the Responses API sends: items and content parts open, deltas, done events."""
    final = responses_json(a)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**final, "status": "in_progress", "output": [], "usage": None}},
        {"type": "response.in_progress", "response": {**final, "status": "in_progress", "output": [], "usage": None}},
    ]
    for index, item in enumerate(final["output"]):
        events.append({"type": "response.output_item.added", "output_index": index,
                       "item": {**item, "status": "in_progress", **({"content": []} if "content" in item else {}),
                                **({"arguments": ""} if "arguments" in item else {})}})
        if item["type"] == "message":
            part = item["content"][0]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append({"type": "response.content_part.added", **where, "part": {**part, "text": ""}})
            events += [{"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
                       for piece in _pieces(part["text"])]
            events.append({"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []})
            events.append({"type": "response.content_part.done", **where, "part": part})
        else:
            events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                           "output_index": index, "delta": item["arguments"]})
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "arguments": item["arguments"], "name": item["name"]})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": f"response.{final['status']}", "response": final})
    return [
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n"
        for i, e in enumerate(events)
    ]


def anthropic_json(a: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": a.text}] if a.text else []
    if a.tool:
        content.append(
            {"type": "tool_use", "id": f"toolu_{a.key}", "name": a.tool[1], "input": json.loads(a.tool[2])}
        )
    cached = min(a.extras.cached_tokens, a.input_tokens)
    written = min(a.extras.cache_write_tokens, a.input_tokens - cached)
    stop = "max_tokens" if a.truncated else "tool_use" if a.tool else "end_turn"
    return {
        "id": f"msg_{a.key}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": a.input_tokens - cached - written,
            "output_tokens": a.output_tokens,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": cached,
        },
    }


def anthropic_stream(a: Answer) -> list[str]:
    final = anthropic_json(a)
    start = {**final, "content": [], "stop_reason": None, "usage": {**final["usage"], "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(final["content"]):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            events += [
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }
                for piece in _pieces(block["text"])
            ]
        else:
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                }
            )
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": final["usage"]["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []
