"""LLMResponse <-> compact JSON bytes, the form responses take in a cache.

Every entry carries a format version; an entry written by another version (or corrupted) fails to
decode with ``ValueError`` and the caches treat it as a miss.
"""

from __future__ import annotations

import json
from typing import Any

from wflo_core.calls import LLMResponse, ToolCall, Usage

FORMAT_VERSION = 1


def encode_response(response: LLMResponse) -> bytes:
    """Serialize a response, usage and tool calls included, to UTF-8 JSON."""
    usage = response.usage
    document = {
        "v": FORMAT_VERSION,
        "provider": response.provider,
        "model": response.model,
        "text": response.text,
        "usage": [usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                  usage.cache_write_tokens, usage.reasoning_tokens],
        "tool_calls": [[c.id, c.name, c.arguments] for c in response.tool_calls],
        "finish_reason": response.finish_reason,
        "response_id": response.response_id,
        "raw": response.raw,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def decode_response(data: bytes | str) -> LLMResponse:
    """The response ``encode_response`` wrote; ``ValueError`` if ``data`` is not such an entry."""
    try:
        document: dict[str, Any] = json.loads(data)
        if document.get("v") != FORMAT_VERSION:
            raise ValueError(f"cache entry format {document.get('v')!r}, expected {FORMAT_VERSION}")
        return LLMResponse(
            provider=document["provider"],
            model=document["model"],
            text=document["text"],
            usage=Usage(*document["usage"]),
            tool_calls=tuple(ToolCall(*call) for call in document["tool_calls"]),
            finish_reason=document["finish_reason"],
            response_id=document["response_id"],
            raw=document["raw"],
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a cached LLM response: {err}") from err
