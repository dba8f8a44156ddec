"""Every cent on every path: the gateway against real Postgres (and SQLite) and the real OpenAI SDK over HTTP.

Each test takes one way a paid call used to slip past the budgets or the ledger (issue 15) and
asserts the invariant on it: for every budget, spent equals the ledger's total for that scope, and
no hold (and no ``held`` ledger row) is left once the call is over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from wflo_core.budgets import CallScope
from wflo_core.calls import LLMRequest, Message
from wflo_core.config import WfloSettings, load_settings
from wflo_core.errors import BudgetExceeded, ConfigError, RetriesExhausted
from wflo_core.events.envelope import decode_event
from wflo_core.events.schemas import LLMCallOverBound, LLMCallSettled
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import Budget, BudgetHold, LLMCall, OutboxEvent
from wflo_core.llm.gateway import output_token_upper_bound, prompt_token_upper_bound
from wflo_core.services import WfloServices, build_services

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
D = Decimal


def _request(text: str = "hello", **kw) -> LLMRequest:
    params = {"max_tokens": 50, "temperature": 0.7, **kw}
    return LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", text),), **params)


def _settings(url: str, llm_server, **overrides) -> WfloSettings:
    s = load_settings(**{"database_url": url, "llm_mode": "live", "openai_api_key": "sk-test-secret",
                         "openai_base_url": llm_server.openai_base_url, "retry_max_attempts": 3,
                         "retry_base_delay_seconds": 0.01, "cache_mode": "never", **overrides})
    upgrade(s.ledger_url)
    return s


@pytest.fixture(params=["postgres", "sqlite"])
def services(request: pytest.FixtureRequest, tmp_path, llm_server) -> Iterator[WfloServices]:
    """The gateway on each ledger backend: their hold and settle statements differ (one CTE each on
    Postgres, a few driver statements on SQLite), the invariants do not."""
    url = (request.getfixturevalue("fresh_postgres_url") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/ledger.db")
    services = build_services(_settings(url, llm_server))
    yield services
    services.close()


@pytest.fixture
def postgres_services(fresh_postgres_url: str, llm_server) -> Iterator[WfloServices]:
    """For a test that fails a statement with a Postgres trigger (a failure a rollback keeps count of)."""
    services = build_services(_settings(fresh_postgres_url, llm_server))
    yield services
    services.close()


def _limit(services: WfloServices, scope: str, key: str, usd: str) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, scope, key, D(usd))


def _rows(services: WfloServices) -> list[LLMCall]:
    with services.ledger.transaction() as s:
        return list(s.scalars(select(LLMCall).order_by(LLMCall.id)))


def assert_accounted(services: WfloServices, run_id: str) -> Decimal:
    """The invariant for one run budget: spent == the ledger's billed total, nothing left held."""
    rows = [r for r in _rows(services) if r.run_id == run_id]
    billed = sum((r.cost_usd for r in rows if r.status in ("settled", "over_bound", "estimated", "cache_hit")),
                 D(0))
    with services.ledger.transaction() as s:
        (run,) = [u for u in services.budgets.usage(s) if u.scope == "run" and u.scope_key == run_id]
        open_holds = s.scalars(select(BudgetHold).where(BudgetHold.status == "held")).all()
    assert [r.status for r in rows if r.status == "held"] == []
    assert open_holds == [] and run.held_usd == 0
    assert run.spent_usd == billed
    return billed


def _bound(services: WfloServices, request: LLMRequest) -> Decimal:
    return services.gateway.parts.catalog.upper_bound("openai", request.model, prompt_token_upper_bound(request),
                                                      output_token_upper_bound(request))


# ---------------------------------------------------------------------------------------------- 1. threads


def test_threads_sharing_one_gateway_record_every_paid_call(services: WfloServices, llm_server) -> None:
    """The first calls of a new run, from 8 threads at once: none may lose its row or leave its hold."""
    scope = CallScope(run_id="run-threads", workflow="wf", step_key="fan")
    _limit(services, "run", "run-threads", "5")
    _limit(services, "workflow", "wf", "5")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def call(worker: int) -> None:
        try:
            barrier.wait(10)
            for i in range(3):
                services.gateway.complete(_request(f"thread {worker} call {i}"), scope, f"run-threads:{worker}:{i}")
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=call, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert llm_server.request_count(CHAT) == 24 == len(_rows(services))
    assert assert_accounted(services, "run-threads") > 0


def test_a_failure_after_the_provider_answered_still_charges_the_answer(postgres_services: WfloServices,
                                                                        llm_server) -> None:
    """The outbox write of the settlement fails once (a trigger raises; a sequence, which no rollback
    undoes, counts the tries): the settlement is retried, and nothing of the failed try was kept."""
    services = postgres_services
    with services.ledger.transaction() as s:
        s.execute(text("CREATE SEQUENCE settled_inserts"))
        s.execute(text(
            "CREATE FUNCTION fail_first_settled() RETURNS trigger AS $$ BEGIN "
            "IF NEW.event_type LIKE '%settled' AND nextval('settled_inserts') = 1 THEN "
            "  RAISE EXCEPTION 'outbox insert failed'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
        s.execute(text("CREATE TRIGGER fail_first BEFORE INSERT ON outbox FOR EACH ROW "
                       "EXECUTE FUNCTION fail_first_settled()"))
    _limit(services, "run", "run-f", "1")
    _, outcome = services.gateway.complete(_request("pay me"), CallScope(run_id="run-f", workflow="wf"), "f1")
    assert outcome.cost_usd > 0
    assert assert_accounted(services, "run-f") == outcome.cost_usd
    with services.ledger.transaction() as s:
        assert s.scalar(text("SELECT last_value FROM settled_inserts")) == 2  # failed once, then went in
        assert s.scalar(select(func.count()).select_from(OutboxEvent)
                        .where(OutboxEvent.event_type.like("%settled"))) == 1


# ---------------------------------------------------------------------------------------------- 2. streams


def test_a_stream_read_only_up_to_its_final_chunk_is_settled(services: WfloServices, llm_server) -> None:
    _limit(services, "run", "run-s", "1")
    scope = CallScope(run_id="run-s", workflow="wf")
    stream = services.gateway.stream(_request("stream me"), scope, "s1")
    final = next(chunk.response for chunk in stream if chunk.response is not None)  # and never touch it again
    (row,) = _rows(services)
    assert (row.status, row.output_tokens) == ("settled", final.usage.output_tokens)
    assert assert_accounted(services, "run-s") == row.cost_usd > 0
    del stream


def test_a_stream_abandoned_before_its_usage_is_charged_at_its_bound(services: WfloServices, llm_server) -> None:
    _limit(services, "run", "run-s", "1")
    request = _request("long answer please")
    stream = services.gateway.stream(request, CallScope(run_id="run-s", workflow="wf"), "s1")
    next(stream)
    stream.close()
    (row,) = _rows(services)
    assert (row.status, row.cost_usd) == ("estimated", _bound(services, request))
    assert assert_accounted(services, "run-s") == row.cost_usd > 0


def test_a_stream_whose_connection_drops_is_charged_at_its_bound(services: WfloServices, llm_server) -> None:
    _limit(services, "run", "run-s", "1")
    request = _request("[drop] half a stream")
    with pytest.raises(Exception):  # noqa: B017 - whichever error the SDK raises for the dropped stream
        list(services.gateway.stream(request, CallScope(run_id="run-s", workflow="wf"), "s1"))
    (row,) = _rows(services)
    assert row.status == "estimated" and row.cost_usd == _bound(services, request)
    assert_accounted(services, "run-s")


# ---------------------------------------------------------------------------------------------- 3. late


def test_a_slow_answer_outliving_hold_ttl_is_still_charged(fresh_postgres_url: str, llm_server) -> None:
    """hold_ttl 1 s, a 3 s answer: the attempt's hold lives past the LLM timeout, so it never expires."""
    services = build_services(_settings(fresh_postgres_url, llm_server, hold_ttl_seconds=1))
    try:
        _limit(services, "run", "run-l", "1")
        _, outcome = services.gateway.complete(_request("[delay:3] slow"), CallScope(run_id="run-l", workflow="wf"),
                                               "l1")
        assert assert_accounted(services, "run-l") == outcome.cost_usd > 0
    finally:
        services.close()


def test_a_hold_that_expired_in_flight_is_settled_late_at_the_actual(services: WfloServices, llm_server) -> None:
    services.gateway.parts.attempt_ttl = timedelta(seconds=0.5)
    _limit(services, "run", "run-l", "1")
    scope = CallScope(run_id="run-l", workflow="wf")
    request = _request("[delay:2] slow")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(services.gateway.complete(request, scope, "l1")))
    worker.start()
    time.sleep(1.2)
    with services.ledger.transaction() as s:  # another step's refused reservation expires stale holds
        assert services.budgets.expire_stale(s) == 1
    with services.ledger.transaction() as s:
        assert s.scalar(select(LLMCall.status)) == "estimated"
        (run,) = services.budgets.usage(s)
        assert run.spent_usd == _bound(services, request) and run.held_usd == 0
    worker.join()
    _, outcome = result[0]
    assert _rows(services)[0].status == "settled"
    assert assert_accounted(services, "run-l") == outcome.cost_usd < _bound(services, request)


# ---------------------------------------------------------------------------------------------- 4. attempts


def test_each_attempt_is_held_and_a_5xx_is_charged_at_its_bound(services: WfloServices, llm_server) -> None:
    _limit(services, "run", "run-a", "1")
    request = _request("[fail:500*2] flaky upstream")
    _, outcome = services.gateway.complete(request, CallScope(run_id="run-a", workflow="wf"), "a1")
    rows = _rows(services)
    assert [(r.idempotency_key, r.status, r.attempt) for r in rows] == [
        ("a1", "estimated", 1), ("a1#2", "estimated", 2), ("a1#3", "settled", 3)]
    assert all(r.bound_usd == _bound(services, request) for r in rows)
    assert llm_server.request_count(CHAT) == 3
    assert assert_accounted(services, "run-a") == 2 * _bound(services, request) + outcome.cost_usd


def test_a_429_is_not_billed_and_its_hold_is_released(services: WfloServices, llm_server) -> None:
    _limit(services, "run", "run-a", "1")
    _, outcome = services.gateway.complete(_request("[fail:429*1] busy"), CallScope(run_id="run-a", workflow="wf"),
                                           "a1")
    assert [(r.status, r.cost_usd) for r in _rows(services)] == [("failed", 0), ("settled", outcome.cost_usd)]
    assert assert_accounted(services, "run-a") == outcome.cost_usd


def test_timeouts_and_dropped_answers_are_estimated_never_zero(fresh_postgres_url: str, llm_server) -> None:
    services = build_services(_settings(fresh_postgres_url, llm_server, llm_timeout_seconds=0.5,
                                        retry_max_attempts=2))
    try:
        _limit(services, "run", "run-t", "1")
        scope = CallScope(run_id="run-t", workflow="wf")
        for key, text in (("t1", "[delay:2] too slow"), ("d1", "[drop] cut off")):
            with pytest.raises(RetriesExhausted):
                services.gateway.complete(_request(text), scope, key)
        rows = _rows(services)
        assert [r.status for r in rows] == ["estimated"] * 4 and all(r.cost_usd > 0 for r in rows)
        assert assert_accounted(services, "run-t") == sum(r.bound_usd for r in rows)
    finally:
        services.close()


def test_unknown_billing_can_be_released_instead(fresh_postgres_url: str, llm_server) -> None:
    services = build_services(_settings(fresh_postgres_url, llm_server, unknown_billing="release",
                                        retry_max_attempts=1))
    try:
        _limit(services, "run", "run-r", "1")
        with pytest.raises(Exception):  # noqa: B017 - the provider error of the 500
            services.gateway.complete(_request("[fail:500*1] x"), CallScope(run_id="run-r", workflow="wf"), "r1")
        assert [(r.status, r.cost_usd) for r in _rows(services)] == [("failed", 0)]
        assert assert_accounted(services, "run-r") == 0
    finally:
        services.close()


# ---------------------------------------------------------------------------------------------- 5. bounds


def test_the_hold_folds_every_output_limit_and_choice_count(services: WfloServices, llm_server) -> None:
    plain = _request("bound me")
    wider = _request("bound me", extra={"max_completion_tokens": 2000, "n": 2})
    assert output_token_upper_bound(wider) == 4000
    services.gateway.complete(wider, CallScope(run_id="run-b", workflow="wf"), "b1")
    (row,) = _rows(services)
    assert row.bound_usd == _bound(services, wider) > 10 * _bound(services, plain)


def test_hosted_tools_priced_per_call_are_refused_before_sending(services: WfloServices, llm_server) -> None:
    request = _request("search the web", tools=({"type": "web_search_preview"},))
    with pytest.raises(ConfigError, match="hosted tool"):
        services.gateway.complete(request, CallScope(run_id="run-b", workflow="wf"), "b1")
    assert llm_server.request_count(CHAT) == 0 and _rows(services) == []


def test_anthropic_tool_use_overhead_is_in_the_bound() -> None:
    tool = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
    plain = LLMRequest(provider="anthropic", model="claude-3-5-haiku-latest", messages=(Message("user", "hi"),))
    with_tools = LLMRequest(provider="anthropic", model="claude-3-5-haiku-latest", messages=(Message("user", "hi"),),
                            tools=(tool,))
    openai_tools = _request("hi", tools=(tool,))
    overhead = prompt_token_upper_bound(with_tools) - prompt_token_upper_bound(plain)
    assert overhead >= 600 > prompt_token_upper_bound(openai_tools) - prompt_token_upper_bound(_request("hi"))


def test_usage_above_the_bound_is_charged_and_flagged(services: WfloServices, llm_server) -> None:
    """A server that ignores max_tokens: billed in full, marked over_bound, with its own event."""
    llm_server.set_usage(padding_tokens=500)
    _limit(services, "run", "run-o", "1")
    _, outcome = services.gateway.complete(_request("ignore my limit"), CallScope(run_id="run-o", workflow="wf"), "o1")
    (row,) = _rows(services)
    assert row.status == "over_bound" and row.output_tokens > 500 and row.cost_usd > row.bound_usd
    with services.ledger.transaction() as s:
        types = set(s.scalars(select(OutboxEvent.event_type)))
    assert LLMCallOverBound.type in types
    assert assert_accounted(services, "run-o") == outcome.cost_usd


# ---------------------------------------------------------------------------------------------- 10, 12


def test_a_cache_hit_is_priced_as_the_requested_model(fresh_postgres_url: str, llm_server) -> None:
    """The provider names a dated snapshot; the saving and the roll-up use the model that was asked for."""
    llm_server.set_usage(model_alias="gpt-4o-mini-2024-07-18-snapshot-unknown-to-the-catalog")
    services = build_services(_settings(fresh_postgres_url, llm_server, cache_mode="always"))
    try:
        scope = CallScope(run_id="run-c", workflow="wf")
        _, paid = services.gateway.complete(_request("same question"), scope, "c1")
        _, hit = services.gateway.complete(_request("same question"), scope, "c2")
        assert hit.cache_hit and hit.saved_usd == paid.cost_usd > 0
        assert {r.model for r in _rows(services)} == {"gpt-4o-mini"}
    finally:
        services.close()


def test_a_long_dynamic_step_key_is_recorded(services: WfloServices, llm_server) -> None:
    step = "fan_out.triage_ticket[" + "T" * 400 + "]"
    scope = CallScope(run_id="run-k", workflow="wf", step_key=step)
    services.gateway.complete(_request("long key"), scope, f"run-k:{step}:0:1")
    (row,) = _rows(services)
    assert row.step_key == step and row.status == "settled"


# ---------------------------------------------------------------------------------------------- fit (issue 16.3)


def test_fit_sends_a_call_with_max_tokens_lowered_to_what_the_budget_has_left(services: WfloServices,
                                                                               llm_server) -> None:
    wanted = _request("fit me in", max_tokens=4000)
    full_bound = _bound(services, wanted)
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "run-fit", full_bound / 2, on_breach="fit")
    scope = CallScope(run_id="run-fit", workflow="wf")
    _, outcome = services.gateway.complete(wanted, scope, "fit1")
    (row,) = _rows(services)
    sent = llm_server.requests(CHAT)[-1]["body"]
    assert row.requested_max_tokens == 4000 and row.max_output_tokens == sent["max_completion_tokens"] < 4000
    assert row.bound_usd <= full_bound / 2 and row.status == "settled"
    with services.ledger.transaction() as s:
        event = s.scalar(select(OutboxEvent.payload).where(OutboxEvent.event_type == LLMCallSettled.type))
    assert '"requested_max_tokens":4000' in event.replace(" ", "")
    assert assert_accounted(services, "run-fit") == outcome.cost_usd


def test_fit_still_refuses_below_its_floor(services: WfloServices, llm_server) -> None:
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "run-fit", D("0.0000001"), on_breach="fit")
    with pytest.raises(BudgetExceeded):
        services.gateway.complete(_request("no room at all", max_tokens=4000),
                                  CallScope(run_id="run-fit", workflow="wf"), "fit1")
    assert llm_server.request_count(CHAT) == 0 and _rows(services) == []


# ---------------------------------------------------------------------------------------------- 6. the hot path

def test_a_day_budget_counts_every_call_from_the_first_of_the_day(fresh_postgres_url: str, llm_server) -> None:
    """A day budget is a template: the first charge of the day creates its counter (the ORM path), every
    later call holds against that counter in the one-statement path, and it refuses like any budget."""
    services = build_services(_settings(fresh_postgres_url, llm_server, budget_day_usd="1"))
    try:
        outcomes = [services.gateway.complete(_request(f"call {i}"), CallScope(run_id=run, workflow="wf"),
                                              f"{run}:{i}")[1]
                    for run in ("run-a", "run-b") for i in range(2)]
        today = CallScope(run_id="run-a", workflow="wf").refs()[-2]
        with services.ledger.transaction() as s:
            (day,) = [u for u in services.budgets.usage(s) if u.scope == "day" and u.scope_key == today.key]
        assert day.spent_usd == sum(o.cost_usd for o in outcomes) > 0 and day.held_usd == 0
        request = _request("one too many")
        with services.ledger.transaction() as s:  # the day's counter leaves less than the next call's bound
            services.budgets.set_limit(s, "day", today.key, day.spent_usd + _bound(services, request) / 2)
        with pytest.raises(BudgetExceeded) as refused:
            services.gateway.complete(request, CallScope(run_id="run-a", workflow="wf"), "run-a:refused")
        assert (refused.value.scope, refused.value.scope_key) == ("day", today.key)
        assert llm_server.request_count(CHAT) == 4
    finally:
        services.close()


def test_threshold_alerts_fire_once_each_as_spend_crosses_them(services: WfloServices, llm_server) -> None:
    scope = CallScope(run_id="run-t", workflow="wf")
    request = _request("the same question", max_tokens=16)
    bound = _bound(services, request)
    _limit(services, "run", "run-t", "1")
    cost = services.gateway.complete(request, scope, "t0")[1].cost_usd  # the run's first call: the ORM path
    calls = int(9 * (bound - cost) / cost) + 2  # enough for the last hold to fit and spend to pass 90%
    limit = (calls - 1) * cost + bound
    _limit(services, "run", "run-t", str(limit))
    for i in range(1, calls):
        services.gateway.complete(request, scope, f"t{i}")
    with services.ledger.transaction() as s:
        (run,) = [u for u in services.budgets.usage(s) if u.scope == "run"]
        sent = s.scalar(select(Budget.alerts_sent).where(Budget.scope == "run"))
        alerts = [decode_event(p).data for p in s.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.event_type == "io.wflo.budget.threshold_crossed"))]
    assert run.spent_usd == calls * cost and run.spent_usd * 100 >= run.limit_usd * 90
    assert sent == [50, 75, 90] == sorted(a["threshold_pct"] for a in alerts)
    assert all(D(a["spent_usd"]) * 100 >= run.limit_usd * a["threshold_pct"] for a in alerts)
