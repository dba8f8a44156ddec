"""The path of one LLM call, end to end: real SDK over HTTP, Redis cache and breaker, Postgres ledger."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from wflo_core.budgets import CallScope
from wflo_core.calls import LLMRequest, Message
from wflo_core.config import WfloSettings, load_settings
from wflo_core.errors import BudgetExceeded, CircuitOpen, ProviderRequestRejected, RetriesExhausted
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import BudgetHold, LLMCall, OutboxEvent
from wflo_core.services import WfloServices, build_services

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"


def _request(text: str = "hello", **kw) -> LLMRequest:
    params = {"max_tokens": 50, "temperature": 0.0, **kw}
    return LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", text),), **params)


@pytest.fixture
def settings(fresh_postgres_url: str, redis_url: str, redis_client, llm_server) -> WfloSettings:
    s = load_settings(database_url=fresh_postgres_url, redis_url=redis_url, llm_mode="live",
                      openai_api_key="sk-test-secret", openai_base_url=llm_server.openai_base_url,
                      retry_max_attempts=3, retry_base_delay_seconds=0.01, breaker_failure_threshold=2,
                      breaker_reset_timeout_seconds=1.0)
    upgrade(s.ledger_url)
    return s


@pytest.fixture
def services(settings: WfloSettings):
    services = build_services(settings)
    yield services
    services.close()


def _calls(services: WfloServices) -> list[LLMCall]:
    with services.ledger.transaction() as s:
        return list(s.scalars(select(LLMCall).order_by(LLMCall.id)))


SCOPE = CallScope(run_id="run-g", workflow="wf", step_key="step")


def test_second_identical_call_is_served_from_redis_at_zero_cost(services, llm_server) -> None:
    first, paid = services.gateway.complete(_request(), SCOPE, "run-g:step:0:1")
    second, hit = services.gateway.complete(_request(), SCOPE, "run-g:step:0:2")
    assert llm_server.request_count(CHAT) == 1
    assert second.text == first.text and hit.cache_hit and not paid.cache_hit
    assert paid.cost_usd > 0 and hit.cost_usd == 0 and hit.saved_usd == paid.cost_usd
    rows = _calls(services)
    assert [(r.status, r.cost_usd, r.saved_usd) for r in rows] == [
        ("settled", paid.cost_usd, Decimal(0)), ("cache_hit", Decimal(0), paid.cost_usd)]


def _identical_calls_worker(settings: WfloSettings, worker: int, start_at: float) -> None:
    services = build_services(settings)
    time.sleep(max(0.0, start_at - time.time()))
    threads = [threading.Thread(target=services.gateway.complete,
                                args=(_request("same question"), SCOPE, f"w{worker}-t{t}")) for t in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    services.close()


def test_twenty_concurrent_identical_calls_from_four_processes_make_one_upstream_request(
        settings, services, llm_server) -> None:
    llm_server.set_behavior(delay=0.5)  # keep the leader in flight while the others arrive
    ctx = mp.get_context("fork")
    start_at = time.time() + 1.0
    procs = [ctx.Process(target=_identical_calls_worker, args=(settings, w, start_at)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert llm_server.request_count(CHAT) == 1
    rows = _calls(services)
    assert len(rows) == 20
    assert sorted(r.status for r in rows).count("settled") == 1
    settled = next(r for r in rows if r.status == "settled")
    assert all(r.saved_usd == settled.cost_usd for r in rows if r.status == "cache_hit")


def test_429_with_retry_after_is_waited_out_and_each_attempt_recorded_once(services, llm_server) -> None:
    llm_server.set_behavior(status=429, retry_after=1, times=1)
    started = time.monotonic()
    services.gateway.complete(_request(temperature=0.7), SCOPE, "run-g:step:0:1")
    assert time.monotonic() - started >= 1.0
    assert llm_server.request_count(CHAT) == 2
    rows = _calls(services)
    assert [(r.status, r.attempt) for r in rows] == [("failed", 1), ("settled", 2)]
    assert rows[0].cost_usd == 0 and rows[1].cost_usd > 0


def test_400_is_not_retried_and_the_hold_is_released(services, llm_server) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "run-g", Decimal("1"))
    llm_server.set_behavior(status=400, times=1)
    with pytest.raises(ProviderRequestRejected):
        services.gateway.complete(_request(temperature=0.7), SCOPE, "run-g:step:0:1")
    assert llm_server.request_count(CHAT) == 1
    with services.ledger.transaction() as s:
        assert s.scalar(select(BudgetHold.status)) == "released"
        assert services.budgets.usage(s)[0].held_usd == 0


def test_retries_exhausted_is_a_clear_error(settings, llm_server) -> None:
    services = build_services(settings.model_copy(update={"breaker_failure_threshold": 10}))
    llm_server.set_behavior(status=500)
    with pytest.raises(RetriesExhausted, match="failed 3 time"):
        services.gateway.complete(_request(temperature=0.7), SCOPE, "run-g:step:0:1")
    assert llm_server.request_count(CHAT) == 3
    rows = _calls(services)
    assert [r.status for r in rows] == ["estimated"] * 3, "a 5xx may have been billed: charged at its bound"
    assert all(r.cost_usd == r.bound_usd > 0 for r in rows)
    services.close()


def _call_in_other_process(settings: WfloSettings, out: mp.Queue) -> None:
    services = build_services(settings)
    try:
        services.gateway.complete(_request("other", temperature=0.7), SCOPE, "other-process")
        out.put("ok")
    except CircuitOpen:
        out.put("circuit_open")
    finally:
        services.close()


def test_breaker_opened_in_one_process_fails_fast_in_another_then_recovers(
        settings, services, llm_server) -> None:
    llm_server.set_behavior(status=500)
    with pytest.raises(CircuitOpen):  # the breaker opens after 2 failures: the 3rd attempt is not sent
        services.gateway.complete(_request(temperature=0.7), SCOPE, "k1")
    reached = llm_server.request_count(CHAT)
    assert reached == 2
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_call_in_other_process, args=(settings, out))
    proc.start()
    proc.join(30)
    assert out.get(timeout=5) == "circuit_open"
    assert llm_server.request_count(CHAT) == reached  # nothing was sent
    llm_server.reset()
    time.sleep(1.1)  # reset timeout: the next call is the half-open probe
    services.gateway.complete(_request("probe", temperature=0.7), SCOPE, "k2")
    services.gateway.complete(_request("after", temperature=0.7), SCOPE, "k3")
    assert llm_server.request_count(CHAT) == 2


def test_budget_refuses_the_call_before_anything_is_sent(services, llm_server) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "run-g", Decimal("0.0001"))
    with pytest.raises(BudgetExceeded, match=r"run budget 'run-g' limit \$0.0001"):
        services.gateway.complete(_request(max_tokens=4000), SCOPE, "big")
    assert llm_server.request_count() == 0
    with services.ledger.transaction() as s:
        types = list(s.scalars(select(OutboxEvent.event_type)))
    assert "io.wflo.budget.exceeded" in types


def test_redis_outage_degrades_to_uncached_calls_instead_of_failing(settings, llm_server) -> None:
    from tests.services import free_port

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})  # nothing listens
    services = build_services(down)
    services.gateway.complete(_request(), SCOPE, "k1")
    services.gateway.complete(_request(), SCOPE, "k2")
    assert llm_server.request_count(CHAT) == 2  # no cache while Redis is down, but no failure either
    assert [r.status for r in _calls(services)] == ["settled", "settled"]
    services.close()


def test_streaming_is_held_before_and_settled_from_the_final_usage(services, llm_server) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "run-g", Decimal("1"))
    outcomes = []
    chunks = list(services.gateway.stream(_request("stream me"), SCOPE, "s1", on_outcome=outcomes.append))
    final = chunks[-1].response
    assert final is not None and "".join(c.text for c in chunks) == final.text and final.text
    (row,) = _calls(services)
    assert (row.status, row.input_tokens, row.output_tokens) == (
        "settled", final.usage.input_tokens, final.usage.output_tokens)
    assert outcomes[0].cost_usd == row.cost_usd > 0
    with services.ledger.transaction() as s:
        (run,) = services.budgets.usage(s)
    assert run.spent_usd == row.cost_usd and run.held_usd == 0
    again = list(services.gateway.stream(_request("stream me"), SCOPE, "s2"))  # now cached
    assert again[-1].response.text == final.text and llm_server.request_count(CHAT) == 1


def test_a_stream_the_caller_abandons_is_charged_at_its_hold(services, llm_server) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "run-g", Decimal("1"))
    stream = services.gateway.stream(_request("long answer please", temperature=0.7), SCOPE, "s1")
    next(stream)
    stream.close()
    (row,) = _calls(services)
    with services.ledger.transaction() as s:
        (run,) = services.budgets.usage(s)
    assert row.status == "estimated" and run.held_usd == 0 and run.spent_usd == row.cost_usd == row.bound_usd > 0
