"""Pre-run estimates: the most a job can cost, from the calls its steps plan to make."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal

from wflo_core.errors import ConfigError
from wflo_core.pricing import PriceCatalog


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """Calls a step expects to make: ``count`` calls of at most these sizes."""

    model: str
    provider: str = "openai"
    max_tokens: int = 1024
    prompt_tokens: int = 2000
    """Upper bound of each prompt's tokens (its UTF-8 byte count is always a safe bound)."""
    count: int = 1

    def __post_init__(self) -> None:
        if min(self.max_tokens, self.prompt_tokens, self.count) < 0:
            raise ConfigError(f"PlannedCall sizes must be >= 0, got {self}")


@dataclass(frozen=True, slots=True)
class StepEstimate:
    step: str
    calls: int
    upper_bound_usd: Decimal | None
    """None: the step can call an LLM but declares no planned calls, so nothing bounds it."""


def total_bound(rows: Iterable[StepEstimate]) -> Decimal | None:
    """The job's bound: the sum of its steps', or None (unbounded) if any step is."""
    bounds = [r.upper_bound_usd for r in rows]
    return None if any(b is None for b in bounds) else sum((b for b in bounds if b is not None), Decimal(0))


def encode_plan(calls: Iterable[PlannedCall]) -> str:
    return json.dumps([asdict(c) for c in calls])


def decode_plan(text: str) -> list[PlannedCall]:
    try:
        return [PlannedCall(**c) for c in json.loads(text)]
    except (ValueError, TypeError) as err:
        raise ConfigError(f"invalid planned-calls metadata {text[:80]!r}: {err}") from err


def estimate(plans: Mapping[str, Iterable[PlannedCall]], catalog: PriceCatalog,
             unplanned: Iterable[str] = ()) -> list[StepEstimate]:
    """Each step's worst-case cost: the sum of its planned calls' reservation amounts; ``unplanned``
    steps (they can call an LLM and declare nothing) are unbounded, never $0."""
    rows = [StepEstimate(step, 0, None) for step in unplanned if step not in plans]
    for step, calls in plans.items():
        calls = list(calls)
        bound = sum((catalog.upper_bound(c.provider, c.model, c.prompt_tokens, c.max_tokens) * c.count
                     for c in calls), Decimal(0))
        rows.append(StepEstimate(step, sum(c.count for c in calls), bound))
    return rows
