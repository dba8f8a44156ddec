"""Steps' open and close rows on Postgres: one statement each, off the step's thread once the run is recorded.

What must still hold: a run's events keep their order (run, then each step's start, its calls, its
end), every row is written when the run ends, a step whose row cannot be written fails without
output, and concurrent first steps of a new run record it once.
"""

from __future__ import annotations

import threading

import dagster as dg
import psycopg
import pytest
from sqlalchemy import select

from tests.conftest import use_live_ledger
from wflo_core.events.outbox import DEFAULT_RECORDER
from wflo_core.events.schemas import StepStarted
from wflo_core.ledger.models import OutboxEvent, Run, Step
from wflo_core.ledger.store import Ledger
from wflo_core.steps import statements
from wflo_core.steps.recorder import StepInfo
from wflo_dagster.decorators import llm_asset
from wflo_dagster.resources.llm import LLMResource

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(postgres_ledger: Ledger, fresh_postgres_url: str, llm_server, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    use_live_ledger(monkeypatch, fresh_postgres_url, llm_server)
    return postgres_ledger


def asked(name: str, *deps: str) -> dg.AssetsDefinition:
    """An asset that makes one LLM call (to the tests' server) after its upstream assets."""

    @llm_asset(name=name, deps=list(deps))
    def _asset(context: dg.AssetExecutionContext, llm: LLMResource) -> str:
        return llm.complete(context, prompt=f"say {name}", model="gpt-4o-mini", provider="openai").text

    return _asset


def outbox_of(ledger: Ledger, run_id: str) -> list[tuple[str, str | None]]:
    """(event type, step key) of a run's events, in outbox order."""
    import json

    with ledger.transaction() as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.key == run_id).order_by(OutboxEvent.id)).all()
        return [(r.event_type, json.loads(r.payload)["data"].get("step_key")) for r in rows]


def test_a_runs_events_keep_their_order_and_every_row_is_written_when_the_run_ends(ledger) -> None:
    assets = [asked("first"), asked("second", "first"), asked("third", "second")]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, instance=instance, resources={"llm": LLMResource()})
    assert result.success
    with ledger.transaction() as session:
        steps = {s.step_key: s.status for s in session.scalars(select(Step).where(Step.run_id == result.run_id))}
        assert session.get(Run, result.run_id) is not None
    assert steps == {"first": "succeeded", "second": "succeeded", "third": "succeeded"}
    events = outbox_of(ledger, result.run_id)
    assert events[0] == ("io.wflo.run.started", None)
    expected = [("io.wflo.run.started", None)]
    for step in ("first", "second", "third"):
        expected += [("io.wflo.step.started", step), ("io.wflo.llm_call.settled", step),
                     ("io.wflo.step.succeeded", step)]
    assert events == expected


def test_a_step_whose_row_cannot_be_written_fails_without_output(ledger, fresh_postgres_url: str) -> None:
    @llm_asset(name="breaks_the_ledger")
    def breaks(context: dg.AssetExecutionContext, llm: LLMResource) -> int:
        with psycopg.connect(fresh_postgres_url, autocommit=True) as conn:  # the next step's open will fail
            conn.execute("ALTER TABLE steps RENAME TO steps_gone")
        return 1

    @llm_asset(name="after", deps=["breaks_the_ledger"])
    def after(context: dg.AssetExecutionContext, llm: LLMResource) -> int:
        return 2

    with dg.instance_for_test() as instance:
        result = dg.materialize([breaks, after], instance=instance, resources={"llm": LLMResource()},
                                raise_on_error=False)
    assert not result.success
    failed = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failed] == ["after"]
    message = failed[0].event_specific_data.error.message
    assert "Failure: the ledger could not record step 'after' of run" in message
    assert 'relation "steps" does not exist' in message and len(message.strip().splitlines()) == 1
    assert not result.asset_materializations_for_node("after")
    assert result.asset_materializations_for_node("breaks_the_ledger")


def test_concurrent_first_steps_of_a_new_run_record_it_once(ledger) -> None:
    run_id, steps = "run-raced", [f"step_{i}" for i in range(8)]
    barrier = threading.Barrier(len(steps))
    errors: list[BaseException] = []

    def open_one(step_key: str) -> None:
        info = StepInfo(run_id=run_id, step_key=step_key, workflow="raced", run_tags={"team": "t"})
        from wflo_core.budgets import CallScope

        scope = CallScope(run_id=run_id, workflow="raced", step_key=step_key)
        barrier.wait()
        try:
            statements.open_step(ledger, DEFAULT_RECORDER, info, scope, [],
                                 StepStarted(run_id=run_id, step_key=step_key, attempt=0))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ledger.transaction() as session:
        run = session.get(Run, run_id)
        opened = sorted(session.scalars(select(Step.step_key).where(Step.run_id == run_id)))
    assert run is not None and run.tags == {"team": "t"} and run.status == "running"
    assert opened == steps
    events = outbox_of(ledger, run_id)
    assert events.count(("io.wflo.run.started", None)) == 1 and events[0] == ("io.wflo.run.started", None)
    assert sorted(step for kind, step in events if kind == "io.wflo.step.started") == steps
