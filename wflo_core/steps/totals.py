"""Per-step totals of LLM usage, accumulated as calls settle and written as step metadata."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from wflo_core.calls import CallOutcome, Usage
from wflo_core.keys import (
    CACHE_HITS_KEY,
    CALLS_KEY,
    COST_KEY,
    INPUT_TOKENS_KEY,
    MODEL_COST_KEY,
    MODEL_TOKENS_KEY,
    OUTPUT_TOKENS_KEY,
    SAVED_KEY,
)


@dataclass
class StepTotals:
    calls: int = 0
    cache_hits: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    usage: Usage = field(default_factory=Usage)
    tokens_by_model: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cost_by_model: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def add(self, outcome: CallOutcome) -> None:
        self.calls += 1
        self.cache_hits += int(outcome.cache_hit)
        self.cost_usd += outcome.cost_usd
        self.saved_usd += outcome.saved_usd
        self.usage = self.usage + outcome.usage
        self.tokens_by_model[outcome.model] += outcome.usage.total_tokens
        self.cost_by_model[outcome.model] += outcome.cost_usd

    def snapshot(self) -> StepTotals:
        """A copy that later calls (a retried attempt's, in the same recorder) leave as it is."""
        return replace(self, tokens_by_model=defaultdict(int, self.tokens_by_model),
                       cost_by_model=defaultdict(Decimal, self.cost_by_model))

    def as_metadata(self) -> dict[str, Any]:
        """Numeric metadata values (the Dagster UI plots these over time on the asset page).

        USD values are floats only here, at the display boundary: Dagster metadata has no decimal type.
        The exact amounts live in the ledger.
        """
        meta: dict[str, Any] = {
            COST_KEY: float(self.cost_usd),
            CALLS_KEY: self.calls,
            CACHE_HITS_KEY: self.cache_hits,
            SAVED_KEY: float(self.saved_usd),
            INPUT_TOKENS_KEY: self.usage.input_tokens,
            OUTPUT_TOKENS_KEY: self.usage.output_tokens,
        }
        for model, tokens in sorted(self.tokens_by_model.items()):
            meta[MODEL_TOKENS_KEY.format(model=model)] = tokens
            meta[MODEL_COST_KEY.format(model=model)] = float(self.cost_by_model[model])
        return meta
