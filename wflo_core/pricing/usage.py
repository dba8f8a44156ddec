"""Token usage of one LLM call, and how to read it from each provider's real response shape.

The ``usage_from_*`` functions take the provider's response as a dict (``resp.model_dump()`` or the
decoded JSON) and return wflo's normalized ``Usage``; anything they cannot read raises ``UsageInvalid``
instead of silently pricing the call at zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from wflo_core.calls import Usage
from wflo_core.errors import UsageInvalid

UsageReader = Callable[[Mapping[str, Any]], Usage]


def _reads(shape: str) -> Callable[[UsageReader], UsageReader]:
    """Turn any unreadable or inconsistent count into one ``UsageInvalid`` naming the shape."""

    def decorate(read: UsageReader) -> UsageReader:
        @functools.wraps(read)
        def reader(response: Mapping[str, Any]) -> Usage:
            try:
                usage = read(response)
                if problem := usage.inconsistency():
                    raise ValueError(problem)
            except ValueError as err:
                raise UsageInvalid(
                    f"UsageInvalid: cannot read {shape} token usage: {err}; the call cannot be priced "
                    "exactly, so settle it at its reserved upper bound",
                    shape=shape,
                ) from None
            return usage

        return reader

    return decorate


@_reads("openai_chat")
def usage_from_openai_chat(response: Mapping[str, Any]) -> Usage:
    """Usage of an OpenAI chat completion, or of any OpenAI-compatible server (vLLM, Ollama, DeepSeek).

    ``prompt_tokens`` already includes ``prompt_tokens_details.cached_tokens`` (cache reads) and
    ``.cache_write_tokens``; ``completion_tokens`` already includes
    ``completion_tokens_details.reasoning_tokens``. Servers that omit the details get zero of each;
    DeepSeek's ``prompt_cache_hit_tokens`` counts as cached.
    """
    usage = _usage_block(response, "prompt_tokens", stream_hint=True)
    prompt_details = _mapping(usage, "prompt_tokens_details")
    cached = _count(prompt_details, "cached_tokens")
    return Usage(
        input_tokens=_count(usage, "prompt_tokens", required=True),
        output_tokens=_count(usage, "completion_tokens"),
        cached_input_tokens=cached or _count(usage, "prompt_cache_hit_tokens"),
        cache_write_tokens=_count(prompt_details, "cache_write_tokens"),
        reasoning_tokens=_count(_mapping(usage, "completion_tokens_details"), "reasoning_tokens"),
    )


@_reads("openai_responses")
def usage_from_openai_responses(response: Mapping[str, Any]) -> Usage:
    """Usage of an OpenAI Responses API response.

    ``input_tokens`` includes cache reads and writes (``input_tokens_details``) and ``output_tokens``
    includes ``output_tokens_details.reasoning_tokens``.
    """
    usage = _usage_block(response, "input_tokens")
    input_details = _mapping(usage, "input_tokens_details")
    return Usage(
        input_tokens=_count(usage, "input_tokens", required=True),
        output_tokens=_count(usage, "output_tokens"),
        cached_input_tokens=_count(input_details, "cached_tokens"),
        cache_write_tokens=_count(input_details, "cache_write_tokens"),
        reasoning_tokens=_count(_mapping(usage, "output_tokens_details"), "reasoning_tokens"),
    )


@_reads("anthropic")
def usage_from_anthropic(response: Mapping[str, Any]) -> Usage:
    """Usage of an Anthropic message.

    Anthropic's ``input_tokens`` counts only the uncached part of the prompt; cache reads and cache
    writes are reported beside it, so they are added to get wflo's all-inclusive ``input_tokens``.
    Thinking is billed as output; ``output_tokens_details.thinking_tokens`` (when present) says how much.
    """
    usage = _usage_block(response, "input_tokens")
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    return Usage(
        input_tokens=_count(usage, "input_tokens", required=True) + cache_read + cache_write,
        output_tokens=_count(usage, "output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_count(_mapping(usage, "output_tokens_details"), "thinking_tokens"),
    )


@_reads("google")
def usage_from_google(response: Mapping[str, Any]) -> Usage:
    """Usage of a Gemini ``generateContent`` response (google-genai ``model_dump()`` or REST camelCase).

    ``prompt_token_count`` includes cached content and ``tool_use_prompt_token_count`` is billed as
    input; ``candidates_token_count`` excludes thinking, which Google bills as output, so thoughts are
    added to the output.
    """
    usage = _mapping(response, "usage_metadata") or _mapping(response, "usageMetadata")
    if not usage:
        raise ValueError("the response has no usage_metadata")
    usage = {_snake_case(key): value for key, value in usage.items()}
    thoughts = _count(usage, "thoughts_token_count")
    return Usage(
        input_tokens=_count(usage, "prompt_token_count", required=True)
        + _count(usage, "tool_use_prompt_token_count"),
        output_tokens=_count(usage, "candidates_token_count") + thoughts,
        cached_input_tokens=_count(usage, "cached_content_token_count"),
        reasoning_tokens=thoughts,
    )


def _usage_block(response: Mapping[str, Any], key: str, *, stream_hint: bool = False) -> Mapping[str, Any]:
    """The ``usage`` object of a whole response; a bare usage object is accepted as well."""
    if "usage" in response:
        usage = response["usage"]
        if not isinstance(usage, Mapping):
            hint = " (when streaming, send stream_options={'include_usage': True})" if stream_hint else ""
            raise ValueError(f"the response's usage is {usage!r}{hint}")
        return usage
    if key in response:
        return response
    raise ValueError(f"the response has no usage object (top-level keys: {sorted(response)[:10]})")


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _count(data: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"{key!r} is missing (got keys {sorted(data)})")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r} is {value!r}, expected a whole number of tokens")
    return value


def _snake_case(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
