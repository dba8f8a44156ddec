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
    upper_bound_usd: Decimal


def encode_plan(calls: Iterable[PlannedCall]) -> str:
    return json.dumps([asdict(c) for c in calls])


def decode_plan(text: str) -> list[PlannedCall]:
    try:
        return [PlannedCall(**c) for c in json.loads(text)]
    except (ValueError, TypeError) as err:
        raise ConfigError(f"invalid planned-calls metadata {text[:80]!r}: {err}") from err


def estimate(plans: Mapping[str, Iterable[PlannedCall]], catalog: PriceCatalog) -> list[StepEstimate]:
    """Each step's worst-case cost: the sum of its planned calls' reservation amounts."""
    rows = []
    for step, calls in plans.items():
        calls = list(calls)
        bound = sum((catalog.upper_bound(c.provider, c.model, c.prompt_tokens, c.max_tokens) * c.count
                     for c in calls), Decimal(0))
        rows.append(StepEstimate(step, sum(c.count for c in calls), bound))
    return rows
