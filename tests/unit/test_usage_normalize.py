"""Usage read from real provider response shapes, cross-checked with genai-prices' own extractors."""

from __future__ import annotations

import pickle
from typing import Any

import genai_prices
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from wflo_core.errors import UsageInvalid
from wflo_core.pricing import (
    Usage,
    usage_from_anthropic,
    usage_from_google,
    usage_from_openai_chat,
    usage_from_openai_responses,
)


def chat_completion(usage: dict[str, Any], model: str = "gpt-4o-2024-08-06") -> dict[str, Any]:
    """A chat completion as the OpenAI SDK parses it, dumped the way the provider adapter does."""
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": usage,
        }
    ).model_dump()


def responses_response(usage: dict[str, Any], model: str = "o3-2025-04-16") -> dict[str, Any]:
    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": model,
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "status": "completed",
            "usage": usage,
        }
    ).model_dump()


def anthropic_message(usage: dict[str, Any], model: str = "claude-sonnet-4-5-20250929") -> Message:
    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


def genai_counts(response: dict[str, Any], provider_id: str, api_flavor: str = "default") -> Usage:
    """The same response read by genai-prices' extractor, in wflo's terms (the independent oracle)."""
    extracted = genai_prices.extract_usage(response, provider_id=provider_id, api_flavor=api_flavor).usage
    value = extracted.reported_value
    return Usage(
        input_tokens=int(value("input_tokens")),
        output_tokens=int(value("output_tokens")),
        cached_input_tokens=int(value("cache_read_tokens")),
        cache_write_tokens=int(value("cache_write_tokens")),
        reasoning_tokens=int(value("output_reasoning_tokens")),
    )


def test_openai_chat_cached_and_reasoning_tokens_are_parts_of_the_totals() -> None:
    response = chat_completion(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 900,
            "total_tokens": 2906,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 640,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    )
    usage = usage_from_openai_chat(response)
    assert usage == Usage(
        input_tokens=2006, output_tokens=900, cached_input_tokens=1920, reasoning_tokens=640
    )
    assert usage == genai_counts(response, "openai", "chat")


def test_openai_chat_cache_writes() -> None:
    response = chat_completion(
        {
            "prompt_tokens": 5000,
            "completion_tokens": 10,
            "total_tokens": 5010,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3500},
        }
    )
    usage = usage_from_openai_chat(response)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (5000, 1000, 3500)
    assert usage == genai_counts(response, "openai", "chat")


def test_openai_responses_api() -> None:
    response = responses_response(
        {
            "input_tokens": 1500,
            "output_tokens": 900,
            "total_tokens": 2400,
            "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 200},
            "output_tokens_details": {"reasoning_tokens": 640},
        }
    )
    usage = usage_from_openai_responses(response)
    assert usage == Usage(
        input_tokens=1500,
        output_tokens=900,
        cached_input_tokens=1024,
        cache_write_tokens=200,
        reasoning_tokens=640,
    )
    assert usage == genai_counts(response, "openai", "responses")


@pytest.mark.parametrize("dump", ["model_dump", "to_dict"])
def test_anthropic_input_tokens_exclude_cache_tokens_but_wflo_input_includes_them(dump: str) -> None:
    message = anthropic_message(
        {
            "input_tokens": 12,
            "output_tokens": 250,
            "cache_creation_input_tokens": 3000,
            "cache_read_input_tokens": 20000,
            "output_tokens_details": {"thinking_tokens": 180},
            "cache_creation": {"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 0},
        }
    )
    response = getattr(message, dump)()
    usage = usage_from_anthropic(response)
    assert usage == Usage(
        input_tokens=23012,
        output_tokens=250,
        cached_input_tokens=20000,
        cache_write_tokens=3000,
        reasoning_tokens=180,
    )
    assert usage == genai_counts(message.model_dump(), "anthropic")


def test_anthropic_without_cache_fields() -> None:
    """``to_dict()`` leaves out fields the API did not send; they count as zero."""
    response = anthropic_message({"input_tokens": 40, "output_tokens": 7}).to_dict()
    assert "cache_read_input_tokens" not in response["usage"]
    assert usage_from_anthropic(response) == Usage(input_tokens=40, output_tokens=7)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # vLLM: details present but null
        (
            {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43, "prompt_tokens_details": None},
            Usage(input_tokens=31, output_tokens=12),
        ),
        # Ollama: no details at all
        (
            {"prompt_tokens": 26, "completion_tokens": 5, "total_tokens": 31},
            Usage(input_tokens=26, output_tokens=5),
        ),
        # DeepSeek: its own cache-hit field
        (
            {
                "prompt_tokens": 900,
                "completion_tokens": 20,
                "total_tokens": 920,
                "prompt_cache_hit_tokens": 768,
                "prompt_cache_miss_tokens": 132,
            },
            Usage(input_tokens=900, output_tokens=20, cached_input_tokens=768),
        ),
    ],
    ids=["vllm", "ollama", "deepseek"],
)
def test_openai_compatible_servers(usage: dict[str, Any], expected: Usage) -> None:
    assert usage_from_openai_chat({"id": "x", "object": "chat.completion", "usage": usage}) == expected
    assert usage_from_openai_chat(usage) == expected  # a bare usage block reads the same


def test_google_thoughts_are_billed_as_output_in_both_spellings() -> None:
    rest = {
        "usageMetadata": {
            "promptTokenCount": 1200,
            "candidatesTokenCount": 300,
            "thoughtsTokenCount": 500,
            "cachedContentTokenCount": 1024,
            "toolUsePromptTokenCount": 40,
            "totalTokenCount": 2040,
        },
        "modelVersion": "gemini-2.5-pro",
    }
    sdk = {
        "usage_metadata": {
            "prompt_token_count": 1200,
            "candidates_token_count": 300,
            "thoughts_token_count": 500,
            "cached_content_token_count": 1024,
            "tool_use_prompt_token_count": 40,
            "total_token_count": 2040,
        }
    }
    expected = Usage(input_tokens=1240, output_tokens=800, cached_input_tokens=1024, reasoning_tokens=500)
    assert usage_from_google(rest) == expected
    assert usage_from_google(sdk) == expected
    assert usage_from_google(rest) == genai_counts(rest, "google")


@pytest.mark.parametrize(
    ("reader", "response", "says"),
    [
        (usage_from_openai_chat, {"id": "x", "choices": [], "usage": None}, "include_usage"),
        (usage_from_openai_chat, {"id": "x", "choices": []}, "no usage object"),
        (usage_from_openai_chat, {"usage": {"completion_tokens": 3}}, "'prompt_tokens' is missing"),
        (usage_from_openai_chat, {"usage": {"prompt_tokens": "12", "completion_tokens": 3}}, "whole number"),
        (usage_from_openai_chat, {"usage": {"prompt_tokens": True}}, "whole number"),
        (usage_from_openai_chat, {"usage": {"prompt_tokens": -1}}, "must be >= 0"),
        (
            usage_from_openai_chat,
            {
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 1,
                    "prompt_tokens_details": {"cached_tokens": 11},
                }
            },
            "exceed input_tokens",
        ),
        (
            usage_from_openai_responses,
            {
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 2,
                    "output_tokens_details": {"reasoning_tokens": 3},
                }
            },
            "exceed output_tokens",
        ),
        (usage_from_anthropic, {"usage": {"output_tokens": 3}}, "'input_tokens' is missing"),
        (usage_from_google, {"candidates": []}, "no usage_metadata"),
    ],
)
def test_unreadable_usage_is_an_error_not_a_free_call(
    reader: Any, response: dict[str, Any], says: str
) -> None:
    with pytest.raises(UsageInvalid) as caught:
        reader(response)
    assert says in str(caught.value)
    assert "reserved upper bound" in str(caught.value)
    assert pickle.loads(pickle.dumps(caught.value)).shape == caught.value.shape
