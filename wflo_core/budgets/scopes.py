"""Which budgets apply to a call: run, workflow, asset, tags and the calendar day and month."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from wflo_core.keys import TAG_PREFIX

Scope = Literal["run", "workflow", "asset", "tag", "day", "month"]
SCOPES: tuple[Scope, ...] = ("run", "workflow", "asset", "tag", "day", "month")

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

    def refs(self, at: datetime | None = None) -> list[ScopeRef]:
        now = (at or datetime.now(UTC)).astimezone(UTC)
        refs = [ScopeRef("run", self.run_id), ScopeRef("workflow", self.workflow)]
        if self.asset_key:
            refs.append(ScopeRef("asset", self.asset_key))
        refs.extend(ScopeRef("tag", f"{k}={v}") for k, v in sorted(self.tags.items()))
        refs.append(ScopeRef("day", now.strftime("%Y-%m-%d")))
        refs.append(ScopeRef("month", now.strftime("%Y-%m")))
        return refs


def tags_from(tags: Mapping[str, str]) -> dict[str, str]:
    """Attribution tags out of Dagster run/op tags (``wflo/tag/team`` → ``team``)."""
    return {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
