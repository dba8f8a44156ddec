"""Cache keys: every output-affecting field changes the key; equal requests always share it."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

import pytest

from wflo_core.cache.keys import cache_key, canonical_request_json, is_cacheable
from wflo_core.calls import LLMRequest, Message, ToolCall
from wflo_core.errors import ConfigError

BASE = LLMRequest(
    provider="openai",
    model="gpt-4o-mini",
    messages=(Message("system", "Be terse."), Message("user", "What is 2+2?")),
    temperature=0.0,
)

TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}

#: One changed value per LLMRequest field; the test below fails if a new field is not listed.
VARIANTS = {
    "provider": "openai_compatible",
    "model": "gpt-4o",
    "messages": (Message("user", "What is 2+3?"),),
    "max_tokens": 17,
    "temperature": 0.5,
    "top_p": 0.9,
    "seed": 7,
    "stop": ("\n",),
    "tools": (TOOL,),
    "tool_choice": "required",
    "response_format": {"type": "json_object"},
    "api": "responses",
    "extra": {"logit_bias": {"50256": -100}},
}


def test_every_request_field_is_covered_by_a_variant() -> None:
    assert set(VARIANTS) == {f.name for f in dataclasses.fields(LLMRequest)}


@pytest.mark.parametrize("field_name", sorted(VARIANTS))
def test_changing_any_field_changes_the_key(field_name: str) -> None:
    changed = dataclasses.replace(BASE, **{field_name: VARIANTS[field_name]})
    assert cache_key(changed) != cache_key(BASE)


def test_message_details_change_the_key() -> None:
    call = ToolCall("c1", "add", '{"a": 1}')
    with_call = dataclasses.replace(BASE, messages=(*BASE.messages, Message("assistant", "", (call,))))
    with_other_args = dataclasses.replace(
        BASE, messages=(*BASE.messages, Message("assistant", "", (ToolCall("c1", "add", '{"a": 2}'),))))
    as_tool_reply = dataclasses.replace(
        BASE, messages=(*BASE.messages, Message("tool", "4", tool_call_id="c1")))
    keys = {cache_key(r) for r in (BASE, with_call, with_other_args, as_tool_reply)}
    assert len(keys) == 4


def test_equal_requests_share_a_key_whatever_the_dict_order_or_number_type() -> None:
    a = dataclasses.replace(BASE, extra={"b": 1, "a": {"y": 2, "x": 3}}, temperature=0.0)
    b = dataclasses.replace(BASE, extra={"a": {"x": 3, "y": 2}, "b": 1}, temperature=0)
    assert cache_key(a) == cache_key(b)
    # tuples and lists are the same JSON
    c = dataclasses.replace(BASE, tools=(TOOL,), stop=("x",))
    d = dataclasses.replace(BASE, tools=[TOOL], stop=["x"])  # type: ignore[arg-type]
    assert cache_key(c) == cache_key(d)


def test_key_is_short_and_does_not_contain_the_prompt() -> None:
    huge = dataclasses.replace(BASE, messages=(Message("user", "secret-token " * 50_000),))
    key = cache_key(huge)
    assert re.fullmatch(r"llm:v1:[0-9a-f]{64}", key)
    assert "secret" not in key


def test_key_is_stable_across_processes_and_releases() -> None:
    # A fixed request must map to a fixed key forever (or KEY_VERSION must be bumped).
    request = LLMRequest(provider="openai", model="m", messages=(Message("user", "hi"),), temperature=0)
    assert canonical_request_json(request) == (
        '{"api":"chat","extra":{},"max_tokens":1024,"messages":[{"content":"hi","role":"user",'
        '"tool_call_id":null,"tool_calls":[]}],"model":"m","provider":"openai","response_format":null,'
        '"seed":null,"stop":[],"temperature":0,"tool_choice":null,"tools":[],"top_p":null}'
    )


@pytest.mark.parametrize("bad", [Decimal("1.5"), object(), float("nan")])
def test_values_without_a_json_form_are_refused_with_the_fix(bad: object) -> None:
    request = dataclasses.replace(BASE, extra={"x": bad})
    with pytest.raises(ConfigError, match="cache='never'"):
        cache_key(request)


@pytest.mark.parametrize(
    ("temperature", "seed", "mode", "expected"),
    [
        (0.0, None, "auto", True),
        (None, 42, "auto", True),
        (0.7, 42, "auto", True),
        (None, None, "auto", False),  # provider default temperature is not deterministic
        (0.7, None, "auto", False),
        (0.7, None, "always", True),
        (0.0, 1, "never", False),
    ],
)
def test_caching_rule(temperature: float | None, seed: int | None, mode: str, expected: bool) -> None:
    request = dataclasses.replace(BASE, temperature=temperature, seed=seed)
    assert is_cacheable(request, mode) is expected  # type: ignore[arg-type]


def test_unknown_cache_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'auto', 'always', 'never'"):
        is_cacheable(BASE, "sometimes")  # type: ignore[arg-type]
