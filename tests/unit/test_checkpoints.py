"""Checkpoints along the run chain and settled LLM answers, on a real SQLite ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from wflo_core.calls import LLMRequest, LLMResponse, Message
from wflo_core.checkpoints import CheckpointStore, SettledResults
from wflo_core.errors import ConfigError
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.store import Ledger
from wflo_core.pricing.usage import Usage


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = Ledger(url)
    yield ledger
    ledger.close()


def chain(ledger: Ledger, *runs: str) -> None:
    """runs[0] is the root; each later run continues the one before it."""
    with ledger.transaction() as session:
        for parent, run in zip((None, *runs), runs, strict=False):
            ledger.ensure_run(session, run, "wf", parent_run_id=parent)


def test_load_returns_the_newest_version_of_the_nearest_run(ledger: Ledger) -> None:
    chain(ledger, "a", "b", "c")
    store = CheckpointStore(ledger)
    assert store.save(run_id="a", workflow="wf", step_key="s", name="progress", state={"done": 1}) == 1
    assert store.save(run_id="a", workflow="wf", step_key="s", name="progress", state={"done": 2}) == 2
    resumed = store.load("c", "progress")
    assert (resumed.run_id, resumed.version, resumed.state) == ("a", 2, {"done": 2})
    store.save(run_id="b", workflow="wf", step_key="s", name="progress", state={"done": 3})
    assert store.load("c", "progress").state == {"done": 3}
    assert store.load("a", "progress").state == {"done": 2}, "a parent never sees its continuation's state"
    assert store.load("c", "missing") is None
    assert store.names("c") == ["progress"]


def test_state_must_be_a_json_object(ledger: Ledger) -> None:
    store = CheckpointStore(ledger)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        store.save(run_id="a", workflow="wf", step_key="s", name="x", state=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be JSON"):
        store.save(run_id="a", workflow="wf", step_key="s", name="x", state={"when": object()})


def test_settled_answers_are_reused_only_for_the_same_request_and_position(ledger: Ledger) -> None:
    chain(ledger, "a", "b")
    results = SettledResults(CheckpointStore(ledger))
    request = LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", "plan it"),))
    response = LLMResponse(provider="openai", model="gpt-4o-mini", text="1. plan", usage=Usage(10, 5))
    with ledger.transaction() as session:
        results.remember(session, run_id="a", workflow="wf", step_key="plan", seq=1, request=request,
                         response=response)
    assert results.recall(run_id="b", step_key="plan", seq=1, request=request) == response
    other = LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", "plan it again"),))
    assert results.recall(run_id="b", step_key="plan", seq=1, request=other) is None
    assert results.recall(run_id="b", step_key="plan", seq=2, request=request) is None
    assert results.recall(run_id="b", step_key="other", seq=1, request=request) is None
