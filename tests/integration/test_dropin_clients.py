"""Drop-in SDK clients from wflo_core: the real OpenAI and Anthropic SDKs over real HTTP, Postgres ledger.

Each API (chat completions, Responses, Anthropic messages), with and without streaming and with tool
calls: one server request is one settled ledger row priced from the usage the server reported, one
outbox event, and the SDK sees the upstream answer exactly. Async clients: 50 concurrent calls from
one step are each held before they are sent and never overshoot a run budget; a cancelled task
settles its hold.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import anthropic
import openai
import pytest
from sqlalchemy import func, select

from tests.llm_server_answers import (
    UsageExtras,
    anthropic_answer,
    anthropic_json,
    chat_answer,
    chat_json,
    responses_answer,
    responses_json,
)
from wflo_core.budgets import CallScope
from wflo_core.config import WfloSettings, load_settings
from wflo_core.errors import BudgetExceeded, UsageInvalid
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import Budget, BudgetHold, LLMCall, OutboxEvent
from wflo_core.llm.dropin import DropinClients
from wflo_core.llm.dropin.wire import APPLIED_MAX_TOKENS_TAG
from wflo_core.pricing import PriceCatalog
from wflo_core.pricing.usage import usage_from_anthropic, usage_from_openai_chat, usage_from_openai_responses
from wflo_core.services import WfloServices, build_services

pytestmark = pytest.mark.integration

TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                         "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}
RESPONSES_TOOL = {"type": "function", "name": "lookup", "parameters": TOOL["function"]["parameters"]}
ANTHROPIC_TOOL = {"name": "lookup", "input_schema": TOOL["function"]["parameters"]}
SCOPE = CallScope(run_id="run-dropin", workflow="wf", step_key="agent")


@pytest.fixture
def settings(fresh_postgres_url: str, llm_server) -> WfloSettings:
    s = load_settings(database_url=fresh_postgres_url, llm_mode="live", retry_base_delay_seconds=0.01,
                      default_max_tokens=333)
    upgrade(s.ledger_url)
    return s


@pytest.fixture
def services(settings: WfloSettings):
    services = build_services(settings)
    yield services
    services.close()


@pytest.fixture
def clients(services: WfloServices):
    clients = DropinClients(services.gateway, services.settings)
    yield clients
    clients.close()


def _calls(services: WfloServices, run_id: str | None = None) -> list[LLMCall]:
    query = select(LLMCall).order_by(LLMCall.id)
    with services.ledger.transaction() as s:
        return list(s.scalars(query if run_id is None else query.where(LLMCall.run_id == run_id)))


def _priced(request: dict, catalog: PriceCatalog) -> Decimal:
    body, extras, path = request["body"], UsageExtras(), request["path"]
    if path.endswith("/messages"):
        return catalog.cost("anthropic", body["model"],
                            usage_from_anthropic(anthropic_json(anthropic_answer(body, extras)))).total_usd
    if path.endswith("/responses"):
        usage = usage_from_openai_responses(responses_json(responses_answer(body, extras)))
    else:
        usage = usage_from_openai_chat(chat_json(chat_answer(body, extras)))
    return catalog.cost("openai", body["model"], usage).total_usd


def _assert_one_priced_row_per_request(services: WfloServices, llm_server) -> list[LLMCall]:
    received, calls = llm_server.requests(), _calls(services)
    catalog = PriceCatalog.from_settings(services.settings)
    assert len(received) == len(calls)
    assert [c.status for c in calls] == ["settled"] * len(calls)
    assert [c.cost_usd for c in calls] == [_priced(r, catalog) for r in received]
    with services.ledger.transaction() as s:
        assert s.scalar(select(func.count()).select_from(BudgetHold).where(BudgetHold.status == "held")) == 0
        settled_events = s.scalar(select(func.count()).select_from(OutboxEvent)
                                  .where(OutboxEvent.event_type == "io.wflo.llm_call.settled"))
    assert settled_events == len(calls)
    return calls


def test_chat_completions_plain_streamed_and_with_tools(clients, services, llm_server) -> None:
    client = clients.openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    tools = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "look up"}],
                                           tools=[TOOL], max_completion_tokens=64)
    with client.chat.completions.create(model="gpt-4o-mini", stream=True, tools=[TOOL],
                                        messages=[{"role": "user", "content": "stream a tool"}]) as events:
        streamed = [e for e in events]
    with client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                        messages=[{"role": "user", "content": "stream words"}]) as events:
        words = "".join(e.choices[0].delta.content or "" for e in events if e.choices)

    assert plain.choices[0].message.content.startswith("Answer from gpt-4o-mini")
    assert tools.choices[0].message.tool_calls[0].function.name == "lookup"
    deltas = [c.function for e in streamed if e.choices for c in e.choices[0].delta.tool_calls or ()]
    assert json.loads("".join(d.arguments for d in deltas)) == {"word": "stream a tool"}
    assert words.startswith("Answer from gpt-4o-mini") and words.endswith("stream words")
    calls = _assert_one_priced_row_per_request(services, llm_server)

    # A request with no output limit is sent with the configured default, and the ledger says so.
    sent = [r["body"] for r in llm_server.requests()]
    assert [b.get("max_completion_tokens") for b in sent] == [333, 64, 333, 333]
    assert [c.tags.get(APPLIED_MAX_TOKENS_TAG) for c in calls] == ["333", None, "333", "333"]
    assert all("authorization" not in json.dumps(r).lower() for r in _cassette_free_rows(calls))


def _cassette_free_rows(calls: list[LLMCall]) -> list[dict]:
    return [{"tags": c.tags, "error": c.error, "cache_key": c.cache_key} for c in calls]


def test_responses_api_plain_streamed_and_with_tools(clients, services, llm_server) -> None:
    client = clients.openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    plain = client.responses.create(model="gpt-4o-mini", input="hello responses")
    tool = client.responses.create(model="gpt-4o-mini", input="find it", tools=[RESPONSES_TOOL])
    with client.responses.stream(model="gpt-4o-mini", input="stream responses") as events:
        for _ in events:
            pass
        final = events.get_final_response()
    with client.responses.stream(model="gpt-4o-mini", input="stream tool", tools=[RESPONSES_TOOL]) as events:
        for _ in events:
            pass
        streamed_tool = events.get_final_response()

    assert plain.output_text.startswith("Answer from gpt-4o-mini")
    assert tool.output[0].type == "function_call" and tool.output[0].name == "lookup"
    assert final.output_text.endswith("stream responses") and final.usage.output_tokens > 0
    assert json.loads(streamed_tool.output[0].arguments) == {"word": "stream tool"}
    _assert_one_priced_row_per_request(services, llm_server)
    assert {r["body"]["max_output_tokens"] for r in llm_server.requests()} == {333}


def test_anthropic_messages_plain_streamed_and_with_tools(clients, services, llm_server) -> None:
    client = clients.anthropic(SCOPE, api_key="sk-ant-test", base_url=llm_server.base_url)
    model = "claude-3-5-haiku-latest"
    plain = client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "hey"}])
    tool = client.messages.create(model=model, max_tokens=100, tools=[ANTHROPIC_TOOL],
                                  messages=[{"role": "user", "content": "use the tool"}])
    with client.messages.stream(model=model, max_tokens=100,
                                messages=[{"role": "user", "content": "stream it"}]) as events:
        text = events.get_final_text()
    with client.messages.stream(model=model, max_tokens=100, tools=[ANTHROPIC_TOOL],
                                messages=[{"role": "user", "content": "stream a tool"}]) as events:
        tool_message = events.get_final_message()

    assert plain.content[0].text.startswith(f"Answer from {model}")
    assert tool.content[0].type == "tool_use" and tool.content[0].input == {"word": "use the tool"}
    assert text.endswith("stream it")
    assert tool_message.content[0].input == {"word": "stream a tool"}
    calls = _assert_one_priced_row_per_request(services, llm_server)
    assert {c.provider for c in calls} == {"anthropic"}
    assert all(r["headers"].get("anthropic-version") for r in llm_server.requests())


def test_an_upstream_error_reaches_the_sdk_as_that_error_after_the_gateways_retries(
        clients, services, llm_server) -> None:
    client = clients.openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    llm_server.set_behavior(status=500, times=2)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "retry"}])
    assert answer.choices[0].message.content.endswith("retry")
    assert llm_server.request_count() == 3  # the gateway retried; the SDK's own retries are off
    llm_server.set_behavior(status=400, times=1)
    with pytest.raises(openai.BadRequestError, match="fake server answered 400"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "bad"}])
    assert llm_server.request_count() == 4
    statuses = [c.status for c in _calls(services)]
    assert statuses.count("settled") == 1


def test_a_refused_call_is_never_sent_and_raises_budget_exceeded(clients, services, llm_server) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", SCOPE.run_id, Decimal("0.00001"))
    client = clients.anthropic(SCOPE, api_key="sk-ant-test", base_url=llm_server.base_url)
    with pytest.raises(anthropic.APIConnectionError) as caught:
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=1000,
                               messages=[{"role": "user", "content": "too dear"}])
    assert isinstance(caught.value.__cause__, BudgetExceeded)
    assert "BudgetExceeded: run budget 'run-dropin' limit $0.00001" in str(caught.value.__cause__)
    assert llm_server.request_count() == 0 and _calls(services) == []


def test_fifty_concurrent_async_calls_from_one_step_never_overshoot_the_run_budget(
        clients, services, llm_server) -> None:
    """Each call is held before it is sent: the budget admits only as many as its limit covers."""
    bound = _bound_of_one(clients, services, llm_server)
    client = clients.async_openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    llm_server.set_behavior(delay=0.2)

    async def one(i: int) -> str:
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", max_completion_tokens=200, messages=[{"role": "user", "content": f"task {i:02}"}])
        return answer.choices[0].message.content

    # Room for about 20 holds of this size: the other 30 calls must be refused, none sent.
    limit = bound * 20 + bound / 2
    with services.ledger.transaction() as s:
        services.ledger.ensure_run(s, SCOPE.run_id, SCOPE.workflow)  # as the step does when it starts
        services.budgets.set_limit(s, "run", SCOPE.run_id, limit)

    async def everyone() -> list[object]:
        return await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)

    results = asyncio.run(everyone())
    answered = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, BudgetExceeded) or isinstance(r.__cause__, BudgetExceeded) for r in refused)
    assert 20 <= len(answered) < 50 and len(answered) + len(refused) == 50
    assert llm_server.request_count() == len(answered)
    calls = _calls(services, SCOPE.run_id)
    assert len(calls) == len(answered)
    with services.ledger.transaction() as s:
        budget = s.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == SCOPE.run_id))
        assert budget.spent_usd == sum(c.cost_usd for c in calls) <= limit
        assert budget.held_usd == 0


def _bound_of_one(clients: DropinClients, services: WfloServices, llm_server) -> Decimal:
    """The hold of one 'task NN' call, read from the gateway's own hold on another run (no figure hard-coded)."""
    probe = CallScope(run_id="probe", workflow="wf", step_key="agent")
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", probe.run_id, Decimal(100))
    client = clients.openai(probe, api_key="sk-test", base_url=llm_server.openai_base_url)
    client.chat.completions.create(model="gpt-4o-mini", max_completion_tokens=200,
                                   messages=[{"role": "user", "content": "task 00"}])
    llm_server.reset()
    with services.ledger.transaction() as s:
        return s.scalar(select(BudgetHold.amount_usd).where(BudgetHold.run_id == probe.run_id))


def test_a_cancelled_async_call_settles_its_hold(clients, services, llm_server) -> None:
    client = clients.async_openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", SCOPE.run_id, Decimal(1))
    llm_server.set_behavior(delay=1.0, times=1)

    async def cancel_midway() -> None:
        task = asyncio.ensure_future(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "slow"}]))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.5)  # the call itself runs on to its end in the gateway's worker

    asyncio.run(cancel_midway())
    assert llm_server.request_count() == 1
    calls = _calls(services)
    assert [c.status for c in calls] == ["settled"]
    with services.ledger.transaction() as s:
        budget = s.scalar(select(Budget).where(Budget.scope == "run", Budget.scope_key == SCOPE.run_id))
        assert budget.held_usd == 0 and budget.spent_usd == calls[0].cost_usd > 0


def test_async_streams_of_both_sdks_are_held_priced_and_recorded(clients, services, llm_server) -> None:
    openai_client = clients.async_openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    anthropic_client = clients.async_anthropic(SCOPE, api_key="sk-ant-test", base_url=llm_server.base_url)

    async def both() -> tuple[str, str, str]:
        stream = await openai_client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "async chat stream"}])
        chat = "".join([e.choices[0].delta.content or "" async for e in stream if e.choices])
        async with openai_client.responses.stream(model="gpt-4o-mini", input="async responses stream") as events:
            async for _ in events:
                pass
            responses = (await events.get_final_response()).output_text
        async with anthropic_client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=100,
                                                    messages=[{"role": "user", "content": "async anthropic"}]) as s:
            text = await s.get_final_text()
        return chat, responses, text

    chat, responses, text = asyncio.run(both())
    assert chat.endswith("async chat stream") and responses.endswith("async responses stream")
    assert text.endswith("async anthropic")
    calls = _assert_one_priced_row_per_request(services, llm_server)
    assert [c.provider for c in calls] == ["openai", "openai", "anthropic"]


def test_a_sub_agent_s_sdk_calls_are_attributed_to_it(services, llm_server) -> None:
    """The scope is asked per request, so a framework's calls follow the step's sub-agent context."""
    current = {"scope": SCOPE}
    clients = DropinClients(services.gateway, services.settings)
    client = clients.openai(lambda: current["scope"], api_key="sk-test", base_url=llm_server.openai_base_url)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "parent"}])
    current["scope"] = CallScope(run_id=SCOPE.run_id, workflow=SCOPE.workflow, step_key=SCOPE.step_key,
                                 tags={"agent": "researcher"}, parent_call_id=_calls(services)[0].id)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "child"}])
    clients.close()
    parent, child = _calls(services)
    assert parent.tags.get("agent") is None and child.tags["agent"] == "researcher"
    assert child.parent_call_id == parent.id


def test_a_stream_dropped_mid_answer_is_charged_at_its_bound_and_leaves_no_hold(
        clients, services, llm_server) -> None:
    client = clients.openai(SCOPE, api_key="sk-test", base_url=llm_server.openai_base_url)
    llm_server.set_behavior(drop=True, times=1)  # half the events, no usage, then the connection is cut
    with pytest.raises(UsageInvalid) as caught:
        with client.chat.completions.create(model="gpt-4o-mini", stream=True, max_completion_tokens=50,
                                            messages=[{"role": "user", "content": "a long answer"}]) as events:
            for _ in events:
                pass
    assert "charged at its bound (estimated)" in str(caught.value)  # the stream ended without its usage
    [call] = _calls(services)
    assert llm_server.request_count() == 1  # a half-streamed answer is never resent
    assert call.status == "estimated" and call.cost_usd == call.bound_usd > 0
    with services.ledger.transaction() as s:
        assert s.scalar(select(func.count()).select_from(BudgetHold).where(BudgetHold.status == "held")) == 0
