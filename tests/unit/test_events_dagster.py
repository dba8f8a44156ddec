"""EventSinkResource, the outbox-relay sensor and `wflo events` on the embedded default (JSONL)."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
from typer.testing import CliRunner

from wflo_core.config import load_settings
from wflo_core.events import LLMCallSettled, RunStarted, decode_event, pending_count
from wflo_core.events.reader import read_jsonl
from wflo_core.ledger.migrations import upgrade
from wflo_dagster.cli import app
from wflo_dagster.resources.events import EventSinkResource
from wflo_dagster.sensors.outbox_relay import outbox_relay_sensor


def file_events() -> list[str]:
    return [decode_event(r.value).type for r in read_jsonl(load_settings().events_path)]


def test_resource_emits_now_or_leaves_the_event_for_the_relay_sensor() -> None:
    upgrade(load_settings().ledger_url)
    events = EventSinkResource()
    events.emit(RunStarted(run_id="r1", workflow="wf"))
    assert file_events() == ["io.wflo.run.started"]

    call = LLMCallSettled(
        run_id="r1",
        provider="openai",
        model="m",
        cost_usd=Decimal("0.5"),
        price_version="v",
        idempotency_key="k1",
    )
    with events.ledger.transaction() as session:
        events.emit(call, session=session)  # in the caller's transaction: published later
    assert file_events() == ["io.wflo.run.started"]

    sensor = outbox_relay_sensor()
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, resources={"events": EventSinkResource()}) as context,
    ):
        result = sensor(context)
    assert isinstance(result, dg.SkipReason) and "published 1" in result.skip_message
    assert file_events() == ["io.wflo.run.started", "io.wflo.llm_call.settled"]
    with events.ledger.transaction() as session:
        assert pending_count(session) == 0


def test_cli_relays_and_tails_the_jsonl_file() -> None:
    upgrade(load_settings().ledger_url)
    events = EventSinkResource()
    with events.ledger.transaction() as session:
        events.emit(RunStarted(run_id="run-a", workflow="wf"), session=session)
        events.emit(RunStarted(run_id="run-b", workflow="wf"), session=session)
        events.emit(
            LLMCallSettled(
                run_id="run-a",
                provider="openai",
                model="gpt-4o-mini",
                cost_usd=Decimal("0.000036"),
                price_version="v",
                idempotency_key="k",
            ),
            session=session,
        )
    runner = CliRunner()
    relayed = runner.invoke(app, ["events", "relay"])
    assert relayed.exit_code == 0 and "published 3" in relayed.output
    only_a = runner.invoke(app, ["events", "tail", "--run", "run-a"])
    assert only_a.exit_code == 0
    assert "run.started" in only_a.output and "cost_usd=$0.000036" in only_a.output
    assert "run-b" not in only_a.output
    calls = runner.invoke(app, ["events", "tail", "--type", "llm_call.settled", "--json"])
    assert [decode_event(line).type for line in calls.output.splitlines()] == ["io.wflo.llm_call.settled"]
