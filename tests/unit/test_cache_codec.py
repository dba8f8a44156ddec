"""The cache codec round-trips every field of an LLMResponse and refuses foreign bytes."""

from __future__ import annotations

import pytest

from wflo_core.cache.codec import decode_response, encode_response
from wflo_core.calls import LLMResponse, ToolCall
from wflo_core.pricing.usage import Usage


def test_round_trip_keeps_every_field() -> None:
    response = LLMResponse(
        provider="anthropic",
        model="claude-3-5-haiku-20241022",
        text="Voilà — 4 ✓",
        usage=Usage(input_tokens=120, output_tokens=30, cached_input_tokens=100, cache_write_tokens=7,
                    reasoning_tokens=5),
        tool_calls=(ToolCall("t1", "add", '{"a": 2, "b": 2}'), ToolCall("t2", "mul", "{}")),
        finish_reason="tool_use",
        response_id="msg_123",
        raw={"id": "msg_123", "content": [{"type": "text", "text": "4"}], "n": 1.5, "ok": None},
    )
    assert decode_response(encode_response(response)) == response


def test_minimal_response_round_trips() -> None:
    response = LLMResponse(provider="openai", model="gpt-4o", text="", usage=Usage())
    assert decode_response(encode_response(response)) == response


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"v": 99, "text": "x"}', b'{"v": 1}',
                                  b'{"v":1,"provider":"p","model":"m","text":"t","usage":[-1,0,0,0,0],'
                                  b'"tool_calls":[],"finish_reason":null,"response_id":null,"raw":{}}'])
def test_foreign_or_corrupt_bytes_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_response(data)
