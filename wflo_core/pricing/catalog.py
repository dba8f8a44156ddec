"""The price catalog: genai-prices' bundled snapshot plus the user's overrides file.

A provider/model is resolved once (overrides first, then genai-prices) into a ``ModelPrice`` holding
every dated price it has had, compiled; after that, pricing a call is a dict lookup, picking the price
in effect and a few ``Decimal`` operations. What to do with a model nobody has priced is the
catalog's ``unknown_model_policy``: refuse it before the call (``error``), price it at zero with a
warning (``warn``) or price it as a named ``fallback`` model.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

import genai_prices
from genai_prices import data_snapshot
from genai_prices import types as genai
from genai_prices.data_units import unit_data
from genai_prices.units import UnitRegistry

from wflo_core.calls import Usage
from wflo_core.config import WfloSettings
from wflo_core.errors import ConfigError, ModelNotPriced
from wflo_core.pricing.cost import Cost, PricePoint
from wflo_core.pricing.overrides import EXAMPLE_PATH, PriceOverrides, load_overrides

UnknownModelPolicy = Literal["error", "warn", "fallback"]
UNPRICED_VERSION = "unpriced"
CATALOG_VERSION = f"genai-prices=={genai_prices.__version__}"
#: Provider names that are never looked up in genai-prices: a self-hosted model must not be billed
#: at a cloud price because its name matches (genai-prices maps ``openai_compatible`` to ``openai``).
OVERRIDES_ONLY_PROVIDERS = frozenset({"openai_compatible"})

logger = logging.getLogger(__name__)


class UnpricedModelWarning(UserWarning):
    """A model without a price was priced at $0 because ``unknown_model_policy`` is ``warn``."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Every price one provider/model has had, oldest first; empty when it is knowingly unpriced."""

    provider: str
    model: str
    points: tuple[PricePoint, ...]
    _start_days: tuple[date | None, ...] | None = field(init=False, repr=False, compare=False)
    """Each point's UTC start date when all are date-constrained (or always valid), else ``None``."""

    def __post_init__(self) -> None:
        constraints = [point.constraint for point in self.points]
        dated = all(c is None or isinstance(c, genai.StartDateConstraint) for c in constraints)
        starts = tuple(getattr(c, "start_date", None) for c in constraints)
        object.__setattr__(self, "_start_days", starts if dated else None)

    def price_at(self, at: datetime | None = None) -> PricePoint | None:
        """The price in effect at ``at`` (default now): the latest active one, else the first.

        Naive datetimes are UTC, as in genai-prices.
        """
        points = self.points
        if len(points) <= 1:
            return points[0] if points else None
        at = at or datetime.now(tz=UTC)
        if self._start_days is None:
            return next((point for point in reversed(points) if point.active(at)), points[0])
        day = (at.astimezone(UTC) if at.tzinfo is not None else at).date()
        for index in range(len(points) - 1, -1, -1):
            start = self._start_days[index]
            if start is None or day >= start:
                return points[index]
        return points[0]

    def cost(self, usage: Usage, at: datetime | None = None) -> Cost:
        point = self.points[0] if len(self.points) == 1 else self.price_at(at)
        if point is None:
            return Cost(Decimal(0), Decimal(0), Decimal(0), UNPRICED_VERSION)
        return point.cost(usage)

    def upper_bound(self, prompt_tokens: int, max_output_tokens: int, at: datetime | None = None) -> Decimal:
        point = self.price_at(at)
        return Decimal(0) if point is None else point.upper_bound(prompt_tokens, max_output_tokens)


class PriceCatalog:
    """Prices calls in USD, exactly as genai-prices would, with overrides and an unknown-model policy."""

    def __init__(
        self,
        overrides_path: Path | None = None,
        unknown_model_policy: UnknownModelPolicy = "error",
        fallback_model: str | None = None,
    ) -> None:
        self._snapshot = data_snapshot.get_snapshot()
        self._registry = UnitRegistry(unit_data)
        self._overrides: PriceOverrides | None = load_overrides(overrides_path) if overrides_path else None
        self._policy = unknown_model_policy
        self._resolved: dict[tuple[str, str], ModelPrice] = {}
        self._fallback = self._resolve_fallback(unknown_model_policy, fallback_model)

    @classmethod
    def from_settings(cls, settings: WfloSettings) -> PriceCatalog:
        return cls(settings.price_overrides_path, settings.unknown_model_policy, settings.fallback_model)

    def resolve(self, provider: str, model: str) -> ModelPrice:
        """The model's prices, looked up once; raises ``ModelNotPriced`` under the ``error`` policy."""
        try:
            return self._resolved[(provider, model)]
        except KeyError:
            pass
        resolved = self._lookup(provider, model)
        if resolved is None:
            resolved = self._unknown(provider, model)
        self._resolved[(provider, model)] = resolved
        return resolved

    def cost(self, provider: str, model: str, usage: Usage, at: datetime | None = None) -> Cost:
        """What a call with this usage cost, at the price in effect at ``at`` (default now)."""
        resolved = self._resolved.get((provider, model)) or self.resolve(provider, model)
        points = resolved.points
        if len(points) == 1:  # the common case, without a clock read or a date comparison
            return points[0].cost(usage)
        return resolved.cost(usage, at)

    def upper_bound(
        self, provider: str, model: str, prompt_tokens: int, max_output_tokens: int,
        at: datetime | None = None,
    ) -> Decimal:
        """The amount to reserve before a call: never less than what it can actually cost.

        ``prompt_tokens`` must itself be an upper bound of the prompt; pass the same ``at`` as to
        ``cost`` (the request time) so that both use the same dated price.
        """
        return self.resolve(provider, model).upper_bound(prompt_tokens, max_output_tokens, at)

    def _lookup(self, provider: str, model: str) -> ModelPrice | None:
        if self._overrides is not None and (entries := self._overrides.prices_for(provider, model)):
            sha = self._overrides.sha
            return ModelPrice(provider, model, tuple(
                PricePoint.compile(
                    entry.to_genai(), self._registry,
                    version=f"override:{sha}:{provider}/{entry.model}@{entry.effective_from or 'always'}",
                    constraint=genai.StartDateConstraint(entry.effective_from) if entry.effective_from else None,
                )
                for entry in entries
            ))
        if provider in OVERRIDES_ONLY_PROVIDERS:
            return None
        try:
            found_provider, found = self._snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        name = f"{CATALOG_VERSION}:{found_provider.id}/{found.id}"
        if isinstance(found.prices, genai.ModelPrice):
            dated = [genai.ConditionalPrice(constraint=None, prices=found.prices)]
        else:
            dated = found.prices
        return ModelPrice(provider, model, tuple(
            PricePoint.compile(entry.prices, self._registry, version=name + _label(entry.constraint),
                               constraint=entry.constraint)
            for entry in dated
        ))

    def _unknown(self, provider: str, model: str) -> ModelPrice:
        if self._policy == "warn":
            message = (f"no price for {provider} model {model!r}; its calls are recorded at $0 "
                       f"(price_version {UNPRICED_VERSION!r}) and count nothing against budgets")
            warnings.warn(message, UnpricedModelWarning, stacklevel=4)
            logger.warning(message)
            return ModelPrice(provider, model, ())
        if self._policy == "fallback" and self._fallback is not None:
            prefix = f"fallback:{provider}/{model}="
            return ModelPrice(provider, model, tuple(
                dataclasses.replace(point, version=prefix + point.version) for point in self._fallback.points
            ))
        raise ModelNotPriced(
            f"ModelNotPriced: no price for {provider} model {model!r}: {_where_looked(provider)}. "
            f"Fix it with one of: add it to a price overrides file (WFLO_PRICE_OVERRIDES_PATH; example "
            f"{EXAMPLE_PATH}); set WFLO_UNKNOWN_MODEL_POLICY=warn to record it at $0 with a warning; or "
            f"set WFLO_UNKNOWN_MODEL_POLICY=fallback and WFLO_FALLBACK_MODEL=provider:model to price it "
            f"like a known model",
            provider=provider,
            model=model,
        )

    def _resolve_fallback(self, policy: UnknownModelPolicy, fallback_model: str | None) -> ModelPrice | None:
        if policy != "fallback":
            return None
        provider, _, model = (fallback_model or "").partition(":")
        if not provider or not model:
            raise ConfigError(
                f"unknown_model_policy is 'fallback' but fallback_model is {fallback_model!r}; set "
                "WFLO_FALLBACK_MODEL=provider:model, e.g. openai:gpt-4o-mini",
                field="fallback_model",
            )
        fallback = self._lookup(provider, model)
        if fallback is None:
            raise ConfigError(
                f"fallback_model {fallback_model!r} has no price itself ({_where_looked(provider)}); "
                "set WFLO_FALLBACK_MODEL to a priced provider:model, e.g. openai:gpt-4o-mini",
                field="fallback_model",
            )
        return fallback


def _label(constraint: genai.StartDateConstraint | genai.TimeOfDateConstraint | None) -> str:
    """Which of a model's dated prices this is, for the price version string."""
    if isinstance(constraint, genai.StartDateConstraint):
        return f"@{constraint.start_date.isoformat()}"
    if isinstance(constraint, genai.TimeOfDateConstraint):
        return f"@{constraint.start_time.isoformat('minutes')}-{constraint.end_time.isoformat('minutes')}"
    return ""


def _where_looked(provider: str) -> str:
    if provider in OVERRIDES_ONLY_PROVIDERS:
        return f"{provider} models are priced only from the overrides file, and it has no entry"
    return f"neither the overrides file nor {CATALOG_VERSION} knows it"
