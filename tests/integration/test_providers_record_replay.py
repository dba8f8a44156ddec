"""Record from a live provider (the real SDKs against the fake server), then replay offline identically."""

from __future__ import annotations

import json

import pytest

from wflo_core.calls import LLMRequest, Message
from wflo_core.config import load_settings
from wflo_core.errors import CassetteMiss, ProviderRateLimited
from wflo_core.llm.providers import (
    AnthropicProvider,
    OpenAIProvider,
    RecordingProvider,
    ReplayProvider,
    build_provider,
)

pytestmark = pytest.mark.integration

KEY = "sk-test-secret-0123456789"
TOOL = {
    "type": "function",
    "function": {"name": "run_python", "parameters": {"type": "object", "properties": {"code": {}}}},
}


def scenario() -> list[LLMRequest]:
    user = (Message("user", "Estimate the compound growth of $100 at 5% for 10 years"),)
    return [
        LLMRequest(provider="openai", model="gpt-4o-mini", messages=user, temperature=0.0),
        LLMRequest(provider="openai", model="gpt-4o-mini", messages=user, tools=(TOOL,)),
        LLMRequest(provider="openai", model="gpt-4o-mini", messages=user, api="responses"),
        LLMRequest(provider="anthropic", model="claude-haiku-4-5", messages=user, api="messages"),
    ]


def test_recorded_calls_replay_identically_without_the_server(llm_server, tmp_path):
    llm_server.set_usage(cached_tokens=5)
    path = tmp_path / "cassettes" / "scenario.jsonl"
    live = {
        "openai": OpenAIProvider(api_key=KEY, base_url=llm_server.openai_base_url, timeout=5),
        "anthropic": AnthropicProvider(api_key=KEY, base_url=llm_server.base_url, timeout=5),
    }
    recorders = {name: RecordingProvider(provider, path) for name, provider in live.items()}
    recorded = [recorders[r.provider].complete(r) for r in scenario()]
    streamed_request = LLMRequest(
        provider="openai", model="gpt-4o-mini", messages=(Message("user", "stream"),)
    )
    streamed = list(recorders["openai"].stream(streamed_request))[-1].response
    for recorder in recorders.values():
        recorder.close()
    sent = llm_server.request_count()
    assert sent == 5

    replay = ReplayProvider(path)
    replayed = [replay.complete(r) for r in scenario()]

    assert replayed == recorded
    assert [r.provider for r in replayed] == ["openai", "openai", "openai", "anthropic"]
    assert replayed[0].usage.cached_input_tokens == 5
    assert replayed[1].tool_calls and replayed[1].tool_calls == recorded[1].tool_calls
    assert replay.complete(streamed_request) == streamed
    assert llm_server.request_count() == sent, "replay must not reach the server"
    text = path.read_text()
    assert KEY not in text and "authorization" not in text.lower() and "x-api-key" not in text.lower()
    assert len(text.splitlines()) == 5
    assert {json.loads(line)["model"] for line in text.splitlines()} == {"gpt-4o-mini", "claude-haiku-4-5"}


def test_failed_live_calls_are_not_recorded(llm_server, tmp_path):
    path = tmp_path / "c.jsonl"
    llm_server.set_behavior(status=429, retry_after="1", times=1)
    recorder = RecordingProvider(
        OpenAIProvider(api_key=KEY, base_url=llm_server.openai_base_url, timeout=5), path
    )
    request = scenario()[0]

    with pytest.raises(ProviderRateLimited):
        recorder.complete(request)
    assert not path.exists()
    recorder.complete(request)
    recorder.close()

    assert ReplayProvider(path).complete(request).text
    with pytest.raises(CassetteMiss):
        ReplayProvider(path).complete(scenario()[1])


def test_record_mode_from_settings_writes_the_configured_cassette(llm_server, tmp_path):
    path = tmp_path / "recorded.jsonl"
    record = load_settings(
        llm_mode="record",
        cassette_path=path,
        anthropic_api_key=KEY,
        anthropic_base_url=llm_server.base_url,
    )
    request = scenario()[3]
    recorder = build_provider("anthropic", record)
    live = recorder.complete(request)
    recorder.close()

    replayed = build_provider("anthropic", load_settings(llm_mode="replay", cassette_path=path)).complete(
        request
    )

    assert replayed == live and llm_server.request_count() == 1
