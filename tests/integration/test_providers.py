"""Provider adapters through the real OpenAI and Anthropic SDKs against the local fake server."""

from __future__ import annotations

import json

import pytest

from wflo_core.calls import LLMRequest, Message, ToolCall
from wflo_core.config import load_settings
from wflo_core.llm.providers import (
    AnthropicProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    build_provider,
)

pytestmark = pytest.mark.integration

KEY = "sk-test-secret-0123456789"
CHAT = "/v1/chat/completions"
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


def ask(text: str, *, provider: str = "openai", model: str = "gpt-4o-mini", **kwargs) -> LLMRequest:
    messages = (Message("system", "You are a careful research assistant."), Message("user", text))
    return LLMRequest(provider=provider, model=model, messages=messages, **kwargs)


@pytest.fixture
def openai_provider(llm_server):
    provider = OpenAIProvider(api_key=KEY, base_url=llm_server.openai_base_url, timeout=5)
    yield provider
    provider.close()


@pytest.fixture
def anthropic_provider(llm_server):
    provider = AnthropicProvider(api_key=KEY, base_url=llm_server.base_url, timeout=5)
    yield provider
    provider.close()


def test_chat_completion_returns_text_and_the_usage_the_server_billed(openai_provider, llm_server):
    response = openai_provider.complete(ask("What is Dagster?", max_tokens=200, temperature=0.2))

    assert "What is Dagster?" in response.text
    billed = response.raw["usage"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        billed["prompt_tokens"],
        billed["completion_tokens"],
    )
    assert response.provider == "openai" and response.model == "gpt-4o-mini"
    assert response.finish_reason == "stop"
    sent = llm_server.requests(CHAT)
    assert len(sent) == 1
    assert sent[0]["body"]["max_completion_tokens"] == 200 and sent[0]["body"]["temperature"] == 0.2
    assert KEY not in json.dumps(response.raw)


def test_chat_reports_cached_and_reasoning_tokens(openai_provider, llm_server):
    llm_server.set_usage(cached_tokens=8, reasoning_tokens=64)

    usage = openai_provider.complete(ask("Think hard about caching")).usage

    assert usage.cached_input_tokens == 8
    assert usage.reasoning_tokens == 64
    assert usage.output_tokens >= 64


def test_chat_tool_call_round_trip(openai_provider, llm_server):
    first = openai_provider.complete(ask("latest Dagster release", tools=(SEARCH_TOOL,)))
    assert first.finish_reason == "tool_calls" and first.text == ""
    (call,) = first.tool_calls
    assert call.name == "web_search" and json.loads(call.arguments) == {"query": "latest Dagster release"}

    follow_up = ask("latest Dagster release", tools=(SEARCH_TOOL,))
    follow_up = LLMRequest(
        provider="openai",
        model="gpt-4o-mini",
        tools=(SEARCH_TOOL,),
        messages=follow_up.messages
        + (
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", "Dagster 1.13 was released", tool_call_id=call.id),
        ),
    )
    second = openai_provider.complete(follow_up)

    assert second.tool_calls == () and "Dagster 1.13 was released" in second.text
    sent = llm_server.requests(CHAT)[1]["body"]["messages"]
    assert sent[2]["tool_calls"][0] == {
        "id": call.id,
        "type": "function",
        "function": {"name": "web_search", "arguments": call.arguments},
    }
    assert sent[3] == {"role": "tool", "tool_call_id": call.id, "content": "Dagster 1.13 was released"}


def test_chat_stream_yields_text_then_a_final_response_with_usage(openai_provider, llm_server):
    chunks = list(openai_provider.stream(ask("Stream me an answer")))

    final = chunks[-1].response
    assert final is not None and all(c.response is None for c in chunks[:-1])
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == final.text
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.usage == openai_provider.complete(ask("Stream me an answer")).usage
    body = llm_server.requests(CHAT)[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_chat_stream_assembles_tool_call_deltas(openai_provider):
    final = list(openai_provider.stream(ask("find wflo", tools=(SEARCH_TOOL,))))[-1].response

    assert final is not None
    assert [(c.name, json.loads(c.arguments)) for c in final.tool_calls] == [
        ("web_search", {"query": "find wflo"})
    ]
    assert final.finish_reason == "tool_calls"


def test_responses_api_text_tools_and_usage(openai_provider, llm_server):
    llm_server.set_usage(cached_tokens=4, reasoning_tokens=32)
    response = openai_provider.complete(
        ask("Summarise wflo", api="responses", model="o4-mini", max_tokens=500)
    )

    assert "Summarise wflo" in response.text and response.finish_reason == "completed"
    assert response.response_id.startswith("resp_")
    assert (response.usage.cached_input_tokens, response.usage.reasoning_tokens) == (4, 32)
    assert response.usage.input_tokens == response.raw["usage"]["input_tokens"]

    called = openai_provider.complete(ask("search it", api="responses", tools=(SEARCH_TOOL,)))
    assert [c.name for c in called.tool_calls] == ["web_search"]
    body = llm_server.requests("/v1/responses")[1]["body"]
    assert body["max_output_tokens"] == 1024
    assert body["tools"][0]["name"] == "web_search" and "function" not in body["tools"][0]

    tool_result = LLMRequest(
        provider="openai",
        model="gpt-4o-mini",
        api="responses",
        messages=(
            Message("user", "search it"),
            Message("assistant", "", tool_calls=called.tool_calls),
            Message("tool", "found: wflo on GitHub", tool_call_id=called.tool_calls[0].id),
        ),
    )
    assert "found: wflo on GitHub" in openai_provider.complete(tool_result).text
    items = llm_server.requests("/v1/responses")[2]["body"]["input"]
    assert items[1]["type"] == "function_call" and items[2]["type"] == "function_call_output"


def test_responses_api_stream(openai_provider):
    chunks = list(openai_provider.stream(ask("stream via responses", api="responses")))

    final = chunks[-1].response
    assert final is not None and final.text == "".join(c.text for c in chunks)
    assert final.usage.output_tokens > 0


def test_anthropic_messages_with_tools_and_prompt_cache_tokens(anthropic_provider, llm_server):
    llm_server.set_usage(cached_tokens=100, cache_write_tokens=20)
    request = ask(
        "Plan the research " * 40,
        provider="anthropic",
        model="claude-haiku-4-5",
        api="messages",
        tools=(SEARCH_TOOL,),
        tool_choice="required",
    )

    response = anthropic_provider.complete(request)

    raw_usage = response.raw["usage"]
    assert response.usage.cached_input_tokens == 100 == raw_usage["cache_read_input_tokens"]
    assert response.usage.cache_write_tokens == 20
    assert response.usage.input_tokens == raw_usage["input_tokens"] + 120
    (call,) = response.tool_calls
    assert call.name == "web_search" and call.id.startswith("toolu_")
    body = llm_server.requests("/v1/messages")[0]["body"]
    assert body["system"] == "You are a careful research assistant."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["tools"][0]["input_schema"]["required"] == ["query"]
    assert body["tool_choice"] == {"type": "any"}


def test_anthropic_tool_results_and_stream(anthropic_provider, llm_server):
    call = ToolCall(id="toolu_1", name="web_search", arguments='{"query":"wflo"}')
    request = LLMRequest(
        provider="anthropic",
        model="claude-haiku-4-5",
        api="messages",
        messages=(
            Message("user", "look up wflo"),
            Message("assistant", "Searching.", tool_calls=(call,)),
            Message("tool", "wflo runs agents on Dagster", tool_call_id="toolu_1"),
        ),
        tools=(SEARCH_TOOL,),
    )

    chunks = list(anthropic_provider.stream(request))

    final = chunks[-1].response
    assert final is not None and "wflo runs agents on Dagster" in final.text
    assert final.text == "".join(c.text for c in chunks)
    assert final.usage.output_tokens == final.raw["usage"]["output_tokens"] > 1
    sent = llm_server.requests("/v1/messages")[0]["body"]["messages"]
    assert sent[1]["content"][1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "web_search",
        "input": {"query": "wflo"},
    }
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "wflo runs agents on Dagster"}
        ],
    }


def test_openai_compatible_endpoint_via_base_url(llm_server):
    provider = OpenAICompatibleProvider(base_url=llm_server.openai_base_url, timeout=5)
    response = provider.complete(ask("hello llama", provider="openai_compatible", model="llama3.1:8b"))
    provider.close()

    assert response.provider == "openai_compatible" and response.model == "llama3.1:8b"
    body = llm_server.requests(CHAT)[0]["body"]
    assert body["max_tokens"] == 1024 and "max_completion_tokens" not in body


def test_build_provider_live_mode_reaches_the_configured_server(llm_server):
    settings = load_settings(
        llm_mode="live",
        openai_api_key=KEY,
        openai_base_url=llm_server.openai_base_url,
        openai_compatible_base_url=llm_server.openai_base_url,
    )
    for name in ("openai", "openai_compatible"):
        provider = build_provider(name, settings)
        assert provider.name == name
        assert provider.complete(ask("via settings", provider=name)).text
        provider.close()
    assert llm_server.request_count(CHAT) == 2


def test_server_in_a_separate_process(llm_server_process):
    provider = OpenAIProvider(api_key=KEY, base_url=llm_server_process.openai_base_url, timeout=5)
    provider.complete(ask("from another process"))
    provider.close()

    assert llm_server_process.request_count() == llm_server_process.request_count(CHAT) == 1


@pytest.mark.parametrize(("api", "path"),
                         [("chat", CHAT), ("responses", "/v1/responses"), ("messages", "/v1/messages")])
def test_extra_parameters_and_headers_reach_the_server(llm_server, api, path):
    """The adapters post a plain body through the SDK client: ``extra`` lands in it, next to the
    request's own fields, and the client's auth and version headers still go along."""
    if api == "messages":
        provider = AnthropicProvider(api_key=KEY, base_url=llm_server.base_url, timeout=5)
        request = ask("hi", provider="anthropic", model="claude-haiku-4-5", api=api, max_tokens=64, temperature=0.3,
                      extra={"metadata": {"user_id": "u-7"}})
    else:
        provider = OpenAIProvider(api_key=KEY, base_url=llm_server.openai_base_url, timeout=5)
        request = ask("hi", api=api, max_tokens=64, temperature=0.3, extra={"metadata": {"user_id": "u-7"}})
    try:
        response = provider.complete(request)
    finally:
        provider.close()

    sent = llm_server.requests(path)[-1]
    assert sent["body"]["metadata"] == {"user_id": "u-7"} and sent["body"]["temperature"] == 0.3
    assert sent["body"]["model"] == request.model and "extra_body" not in sent["body"]
    headers = {k.lower() for k in sent["headers"]}
    assert "anthropic-version" in headers if api == "messages" else "user-agent" in headers
    assert response.usage.input_tokens > 0 and response.text
