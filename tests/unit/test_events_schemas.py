"""Event schemas round-trip exactly; money is a JSON string; malformed input is a clear EventError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wflo_core.errors import EventError
from wflo_core.events import (
    EVENT_TYPES,
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceededEvent,
    BudgetThresholdCrossed,
    LLMCallCacheHit,
    LLMCallOverBound,
    LLMCallSettled,
    RunCanceled,
    RunFailed,
    RunStarted,
    RunSucceeded,
    SandboxFinished,
    SandboxKilled,
    StepFailed,
    StepRetried,
    StepStarted,
    StepSucceeded,
    decode_event,
    encode_event,
    new_event,
)
from wflo_core.events.envelope import encode_new_event

SETTLED = LLMCallSettled(
    run_id="r1",
    step_key="summarize",
    provider="openai",
    model="gpt-4o-mini",
    input_tokens=1200,
    cached_input_tokens=200,
    output_tokens=300,
    cost_usd=Decimal("0.0000001"),
    price_version="genai-prices@0.2.3",
    idempotency_key="r1/summarize/0/1",
    latency_ms=420,
)

ONE_OF_EACH = [
    RunStarted(run_id="r1", workflow="wf", tags={"team": "ml"}),
    RunSucceeded(run_id="r1", workflow="wf", cost_usd=Decimal("1.25")),
    RunFailed(run_id="r1", workflow="wf", error="boom"),
    RunCanceled(run_id="r1", workflow="wf", reason="user"),
    StepStarted(run_id="r1", step_key="s", attempt=0),
    StepSucceeded(run_id="r1", step_key="s", cost_usd=Decimal("0.5"), llm_calls=3, cache_hits=1),
    StepFailed(run_id="r1", step_key="s", error="bad"),
    StepRetried(run_id="r1", step_key="s", attempt=1, error="flaky"),
    SETTLED,
    LLMCallCacheHit(
        run_id="r1",
        provider="openai",
        model="m",
        saved_usd=Decimal("0.02"),
        price_version="v",
        idempotency_key="hit-1",
    ),
    LLMCallOverBound(
        run_id="r1",
        provider="openai_compatible",
        model="m",
        output_tokens=567,
        cost_usd=Decimal("0.0006"),
        bound_usd=Decimal("0.0002"),
        price_version="v",
        idempotency_key="over-1",
    ),
    BudgetThresholdCrossed(
        scope="run",
        scope_key="r1",
        limit_usd=Decimal(5),
        spent_usd=Decimal("3.8"),
        threshold_pct=75,
        run_id="r1",
    ),
    BudgetExceededEvent(
        scope="day",
        scope_key="2026-11-24",
        limit_usd=Decimal(5),
        spent_usd=Decimal("4.9"),
        requested_usd=Decimal("0.2"),
    ),
    SandboxFinished(run_id="r1", backend="docker", exit_code=0, wall_ms=240),
    SandboxKilled(backend="process", wall_ms=10_000, reason="timeout"),
    ApprovalRequested(
        run_id="r1",
        approval_id="a1",
        step_key="gate",
        reason="over budget",
        approvers=["ops"],
        expires_at=datetime(2026, 11, 25, tzinfo=UTC),
    ),
    ApprovalDecided(run_id="r1", approval_id="a1", step_key="gate", decision="approved", decided_by="ana"),
]


def test_every_event_type_has_an_example_here() -> None:
    assert {type(e).type for e in ONE_OF_EACH} | {"io.wflo.event.dead_lettered"} == set(EVENT_TYPES)


@pytest.mark.parametrize("data", ONE_OF_EACH, ids=lambda d: d.type)
def test_round_trip_through_bytes(data) -> None:
    event = new_event(data, source="/wflo/test")
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert decoded.data_model() == data
    assert decoded.specversion == "1.0" and decoded.type.startswith("io.wflo.")
    assert decoded.dataschema == f"urn:wflo:{data.type}:1"


@pytest.mark.parametrize("data", [
    *ONE_OF_EACH,
    StepStarted(run_id='r"1\\', step_key="ünïcode/\u2028\x01\t步骤"),  # escapes and non-ASCII text
    BudgetThresholdCrossed(scope="day", scope_key="2026-12-01", limit_usd=Decimal("5"), spent_usd=Decimal("4"),
                           threshold_pct=80),  # no run: no subject
], ids=lambda d: d.type)
@pytest.mark.parametrize("time", [datetime(2026, 12, 1, 20, 1, 2, 345678, tzinfo=UTC),
                                  datetime(2026, 12, 1, 20, 1, 2, tzinfo=UTC)], ids=["micros", "whole"])
def test_the_fast_encoder_writes_what_the_envelope_model_writes(data, time: datetime) -> None:
    event_id, text = encode_new_event(data, source="/wflo/test", time=time)
    assert text.encode() == encode_event(new_event(data, source="/wflo/test", id=event_id, time=time))
    assert event_id == new_event(data).id or data.dedupe_key is None
    assert decode_event(text).data_model() == data


def test_money_is_a_json_string_and_stays_exact() -> None:
    wire = json.loads(encode_event(new_event(SETTLED)))
    assert wire["data"]["cost_usd"] == "0.0000001"
    assert wire["partitionkey"] == "r1" and wire["subject"] == "runs/r1/steps/summarize"
    assert decode_event(json.dumps(wire)).data_model().cost_usd == Decimal("1E-7")


@pytest.mark.parametrize("bad", [0.1, "NaN", "Infinity", "-0.01", True, "ten cents"])
def test_money_refuses_floats_and_non_amounts(bad) -> None:
    wire = json.loads(encode_event(new_event(SETTLED)))
    wire["data"]["cost_usd"] = bad
    with pytest.raises(EventError, match="data.*cost_usd|cost_usd"):
        decode_event(json.dumps(wire))


def test_the_same_fact_gets_the_same_id_and_new_facts_new_ones() -> None:
    assert new_event(SETTLED).id == new_event(SETTLED).id
    killed = SandboxKilled(backend="process", wall_ms=1, reason="memory")
    assert new_event(killed).id != new_event(killed).id


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not a CloudEvents 1.0 JSON event"),
        (b"\xff\xfe", "not a CloudEvents 1.0 JSON event"),
        (b"[1, 2]", "not a CloudEvents 1.0 JSON event"),
        (b'{"specversion": "0.3"}', "specversion"),
        (
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": "1",
                    "source": "/x",
                    "type": "io.wflo.nope",
                    "time": "2026-01-01T00:00:00Z",
                    "data": {},
                }
            ).encode(),
            "unknown event type 'io.wflo.nope'",
        ),
        (
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": "1",
                    "source": "/x",
                    "type": "io.wflo.run.started",
                    "time": "2026-01-01T00:00:00",
                    "data": {},
                }
            ).encode(),
            "time",
        ),
        (
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": "1",
                    "source": "/x",
                    "type": "io.wflo.run.started",
                    "dataversion": "2",
                    "time": "2026-01-01T00:00:00Z",
                    "data": {"run_id": "r", "workflow": "w"},
                }
            ).encode(),
            "data version '2'",
        ),
    ],
)
def test_malformed_payloads_say_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(EventError, match=message):
        decode_event(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzzed_bytes_only_ever_raise_event_error(raw: bytes) -> None:
    try:
        decode_event(raw)
    except EventError as err:
        assert str(err)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(["id", "source", "type", "time", "specversion", "data", "subject"]),
    value=json_values,
    data_field=st.sampled_from(sorted(SETTLED.model_fields)),
    data_value=json_values,
)
def test_fuzzed_fields_of_a_valid_event_only_ever_raise_event_error(
    field, value, data_field, data_value
) -> None:
    wire = json.loads(encode_event(new_event(SETTLED)))
    wire[field] = value
    if isinstance(wire.get("data"), dict):
        wire["data"][data_field] = data_value
    try:
        decoded = decode_event(json.dumps(wire))
    except EventError:
        return
    assert decoded.data_model().type == LLMCallSettled.type


def test_deeply_nested_json_is_an_event_error_not_a_crash() -> None:
    with pytest.raises(EventError):
        decode_event(b"[" * 100_000 + b"]" * 100_000)
