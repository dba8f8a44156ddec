"""Which budgets apply to a call: run, workflow, asset, tags and the calendar day and month."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from wflo_core.keys import TAG_PREFIX

Scope = Literal["run", "workflow", "asset", "materialization", "tag", "day", "month"]
SCOPES: tuple[Scope, ...] = ("run", "workflow", "asset", "materialization", "tag", "day", "month")
"""``asset`` is a standing limit on every materialization of an asset together; ``materialization``
is one materialization's own (an asset in one run, for one partition: ``llm_asset(budget_usd=)``)."""

PERIOD_TEMPLATE_KEY = "*"
"""``scope_key`` of a day/month budget that applies to every period (the counters are per period)."""



@dataclass(frozen=True, slots=True)
class ScopeRef:
    scope: Scope
    key: str


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who a call is charged to. Built once per step and passed with every call."""

    run_id: str
    workflow: str
    step_key: str | None = None
    asset_key: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    """Attribution tags (``team``: ``ml``, ``agent``: ``planner``)."""
    parent_call_id: int | None = None
    """For a sub-agent's calls: the ledger id of the call after which the parent agent delegated."""
    partition_key: str | None = None

    @property
    def materialization_key(self) -> str | None:
        """``asset@run[/partition]``: the key of this materialization's own budget."""
        if not self.asset_key:
            return None
        base = f"{self.asset_key}@{self.run_id}"
        return f"{base}/{self.partition_key}" if self.partition_key else base

    def refs(self, at: datetime | None = None) -> list[ScopeRef]:
        now = (at or datetime.now(UTC)).astimezone(UTC)
        refs = [ScopeRef("run", self.run_id), ScopeRef("workflow", self.workflow)]
        if self.asset_key:
            refs.append(ScopeRef("asset", self.asset_key))
            refs.append(ScopeRef("materialization", self.materialization_key or ""))
        refs.extend(ScopeRef("tag", f"{k}={v}") for k, v in sorted(self.tags.items()))
        refs.append(ScopeRef("day", now.strftime("%Y-%m-%d")))
        refs.append(ScopeRef("month", now.strftime("%Y-%m")))
        return refs


def tags_from(tags: Mapping[str, str]) -> dict[str, str]:
    """Attribution tags out of Dagster run/op tags (``wflo/tag/team`` → ``team``)."""
    return {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
