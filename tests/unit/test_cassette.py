"""Cassettes and the replay provider: fingerprints, lookups, clear misses, the shipped cassette."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from wflo_core.calls import LLMRequest, LLMResponse, Message, ToolCall
from wflo_core.config import load_settings
from wflo_core.errors import CassetteMiss, ConfigError
from wflo_core.llm.providers import (
    Cassette,
    RecordingProvider,
    ReplayProvider,
    build_provider,
    default_cassette_path,
    request_fingerprint,
)
from wflo_core.llm.providers.cassette import request_from_json
from wflo_core.llm.providers.openai import OpenAIProvider
from wflo_core.pricing.usage import Usage

REQUEST = LLMRequest(
    provider="openai",
    model="gpt-4o-mini",
    messages=(Message("system", "Be brief."), Message("user", "Plan a study of solar panel efficiency")),
    max_tokens=300,
)
RESPONSE = LLMResponse(
    provider="openai",
    model="gpt-4o-mini-2024-07-18",
    text="1. Collect data. 2. Compare panels.",
    usage=Usage(input_tokens=31, output_tokens=12, cached_input_tokens=0),
    tool_calls=(ToolCall("call_1", "web_search", '{"query":"solar"}'),),
    finish_reason="tool_calls",
    response_id="chatcmpl-1",
    raw={"id": "chatcmpl-1", "usage": {"prompt_tokens": 31, "completion_tokens": 12}},
)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"provider": "openai_compatible"},
        {"messages": (Message("user", "Plan a study of wind turbines"),)},
        {"max_tokens": 301},
        {"temperature": 0.0},
        {"top_p": 0.9},
        {"seed": 7},
        {"stop": ("END",)},
        {"tools": ({"type": "function", "function": {"name": "f"}},)},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"api": "responses"},
        {"extra": {"reasoning_effort": "low"}},
    ],
)
def test_fingerprint_changes_with_every_output_affecting_field(change):
    assert request_fingerprint(dataclasses.replace(REQUEST, **change)) != request_fingerprint(REQUEST)


def test_fingerprint_is_stable_across_equal_requests():
    same = LLMRequest(
        provider="openai",
        model="gpt-4o-mini",
        max_tokens=300,
        messages=(Message("system", "Be brief."), Message("user", "Plan a study of solar panel efficiency")),
    )
    assert request_fingerprint(same) == request_fingerprint(REQUEST)
    assert len(request_fingerprint(REQUEST)) == 64


def test_replay_returns_the_recorded_response_unchanged(tmp_path):
    path = tmp_path / "c.jsonl"
    Cassette(path).record(REQUEST, RESPONSE)

    replayed = ReplayProvider(path).complete(REQUEST)

    assert replayed == RESPONSE
    assert replayed.provider == "openai" and replayed.model == "gpt-4o-mini-2024-07-18"


def test_replay_stream_yields_the_text_then_the_response(tmp_path):
    path = tmp_path / "c.jsonl"
    Cassette(path).record(REQUEST, RESPONSE)

    chunks = list(ReplayProvider(path).stream(REQUEST))

    assert "".join(c.text for c in chunks) == RESPONSE.text
    assert chunks[-1].response == RESPONSE and all(c.response is None for c in chunks[:-1])


def test_unknown_request_fails_with_a_message_that_says_how_to_record(tmp_path):
    path = tmp_path / "c.jsonl"
    Cassette(path).record(REQUEST, RESPONSE)
    other = dataclasses.replace(REQUEST, messages=(Message("user", "Summarise the   findings\nplease"),))

    with pytest.raises(CassetteMiss) as caught:
        ReplayProvider(path).complete(other)

    message = str(caught.value)
    assert "gpt-4o-mini" in message and "'Summarise the findings please'" in message
    assert str(path) in message and "WFLO_LLM_MODE=record" in message
    assert caught.value.fingerprint == request_fingerprint(other)
    assert pickle.loads(pickle.dumps(caught.value)).cassette_path == str(path)


def test_later_recording_of_the_same_request_wins(tmp_path):
    path = tmp_path / "c.jsonl"
    Cassette(path).record(REQUEST, RESPONSE)
    Cassette(path).record(REQUEST, dataclasses.replace(RESPONSE, text="re-recorded"))

    assert len(path.read_text().splitlines()) == 2
    assert ReplayProvider(path).complete(REQUEST).text == "re-recorded"


def test_missing_or_corrupt_cassette_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ReplayProvider(tmp_path / "absent.jsonl")
    path = tmp_path / "broken.jsonl"
    Cassette(path).record(REQUEST, RESPONSE)
    with path.open("a") as file:
        file.write('{"format": 1, "fingerprint": \n')
    with pytest.raises(ConfigError, match="line 2"):
        ReplayProvider(path)


def test_build_provider_defaults_to_replaying_the_shipped_cassette():
    provider = build_provider("openai", load_settings())
    assert isinstance(provider, ReplayProvider)
    assert provider.name == "openai", "budgets price the upper bound under the provider it stands in for"


@pytest.mark.parametrize(
    ("name", "settings", "match"),
    [
        ("gemini", {}, "unknown LLM provider 'gemini'"),
        ("openai", {"llm_mode": "live"}, "WFLO_OPENAI_API_KEY"),
        ("anthropic", {"llm_mode": "live"}, "WFLO_ANTHROPIC_API_KEY"),
        ("openai_compatible", {"llm_mode": "live"}, "WFLO_OPENAI_COMPATIBLE_BASE_URL"),
    ],
)
def test_build_provider_refuses_incomplete_settings(name, settings, match):
    with pytest.raises(ConfigError, match=match):
        build_provider(name, load_settings(**settings))


def test_record_mode_without_a_cassette_records_under_wflo_home_never_into_the_package():
    settings = load_settings(llm_mode="record", openai_api_key="sk-x")
    provider = build_provider("openai", settings)
    assert isinstance(provider, RecordingProvider)
    assert provider._cassette.path == settings.recordings_path
    assert settings.recordings_path.is_relative_to(settings.home)
    assert not settings.recordings_path.resolve().is_relative_to(default_cassette_path().parent.parent.parent)


def test_auto_mode_calls_live_with_a_key_and_replays_without_one():
    assert isinstance(build_provider("openai", load_settings(openai_api_key="sk-x")), OpenAIProvider)
    replay = build_provider("openai", load_settings())
    assert isinstance(replay, ReplayProvider)
    with pytest.raises(CassetteMiss) as caught:
        replay.complete(REQUEST)
    message = str(caught.value)
    assert "\n" not in message and "OPENAI_API_KEY" in message and "WFLO_LLM_MODE=record" in message
    assert str(load_settings().recordings_path) in message and "site-packages" not in message


def test_shipped_cassette_is_priced_by_the_catalog_from_its_recorded_usage():
    lines = default_cassette_path().read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    cassette = Cassette(default_cassette_path())
    assert len(cassette) == len(entries) >= 4

    for entry in entries:
        request = request_from_json(entry["request"])
        response = cassette.find(request)
        assert response is not None and response.usage.output_tokens > 0
        assert entry["fingerprint"] == request_fingerprint(request)
        price = calc_price(
            PriceUsage(
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                cache_read_tokens=response.usage.cached_input_tokens,
            ),
            model_ref=response.model,
            provider_id=response.provider,
        )
        assert price.total_price > 0
    assert {e["provider"] for e in entries} == {"openai", "anthropic"}
    assert any(e["response"]["tool_calls"] for e in entries)
