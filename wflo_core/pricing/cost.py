"""One price of one model, validated and compiled once (see ``pricer`` for the per-call function).

``PricePoint.compile`` turns one genai-prices ``ModelPrice`` into a flat list of priced units. Each
unit knows how to count its tokens from wflo's ``Usage`` (the same leaf decomposition genai-prices
does: ``input_tokens`` minus cache reads and writes when those are priced separately); ``pricer``
prices them with ``calc_price``'s arithmetic, so the results are identical to the last digit,
exponent included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias

from wflo_core.calls import Usage
from wflo_core.errors import PricingError
from wflo_core.pricing.pricer import INPUT, OTHER, OUTPUT, USAGE_KEYS, PricedUnit, Pricer, compile_pricer

if TYPE_CHECKING:  # genai-prices is imported only to compile a price (see ``catalog``'s cache)
    from genai_prices import types as genai
    from genai_prices.units import UnitDef, UnitRegistry

_INPUT_KEYS = frozenset({"input_tokens", "cache_read_tokens", "cache_write_tokens"})
_OUTPUT_KEYS = frozenset({"output_tokens", "output_reasoning_tokens"})
_ZERO = Decimal(0)
_DIRECTIONS = {"input": INPUT, "output": OUTPUT}



@dataclass(frozen=True, slots=True)
class StartDate:
    """A price in effect from a UTC date on: genai-prices' ``StartDateConstraint``, as wflo's own type
    so that a price read back from the catalog cache needs no genai-prices."""

    start_date: date

    def active(self, at: datetime) -> bool:
        """As genai-prices decides it: the instant's UTC date; naive datetimes are UTC."""
        if at.tzinfo is not None:
            at = at.astimezone(UTC)
        return at.date() >= self.start_date


if TYPE_CHECKING:
    Constraint: TypeAlias = StartDate | genai.TimeOfDateConstraint


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One price of one model, valid while ``constraint`` holds (``None``: always)."""

    version: str
    constraint: Constraint | None
    units: tuple[PricedUnit, ...]
    tiered: bool
    price: Pricer = field(init=False, repr=False, compare=False)
    """This price compiled into one function of the usage (``at`` is ignored: the price is chosen)."""
    _flat_rates: tuple[Decimal, Decimal, Decimal] | None = field(init=False, repr=False, compare=False)
    """``_rates()`` of an untiered price, which do not depend on the prompt length."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", compile_pricer(self.units, self.version))
        object.__setattr__(self, "_flat_rates", None if self.tiered else self._rates(0))

    @classmethod
    def compile(
        cls, model_price: genai.ModelPrice, registry: UnitRegistry, *, version: str,
        constraint: Constraint | None,
    ) -> PricePoint:
        """Validate a genai-prices ``ModelPrice`` the way ``calc_price`` does and flatten it."""
        from genai_prices import types as genai
        from genai_prices.validation import validate_priced_units

        resolved: list[tuple[UnitDef, Decimal | genai.TieredPrices]] = []
        for price_key, value in model_price.__dict__.items():
            if price_key.startswith("_") or value is None:
                continue
            try:
                unit = registry.unit_for_price_key(price_key)
            except KeyError:
                continue  # calc_price drops (with a warning) price keys its unit registry does not know
            resolved.append((unit, _valid_price(version, price_key, value)))
        try:
            validate_priced_units(tuple(unit for unit, _ in resolved), registry)
        except ValueError as err:
            raise PricingError(f"price {version} is inconsistent: {err}", price_version=version) from None
        terms = _leaf_terms([unit for unit, _ in resolved if unit.usage_key != "requests"])
        units = tuple(
            PricedUnit(
                usage_key=unit.usage_key,
                direction=_DIRECTIONS.get(unit.dimensions.get("direction", ""), OTHER),
                price=price.base if isinstance(price, genai.TieredPrices) else price,
                tiers=tuple((t.start, t.price) for t in reversed(price.tiers))
                if isinstance(price, genai.TieredPrices) else (),
                per=unit.per,
                terms=terms.get(unit.usage_key, ()),
                constant=1 if unit.usage_key == "requests" else 0,
            )
            for unit, price in resolved
        )
        return cls(version, constraint, units, any(u.tiers for u in units))

    def active(self, at: datetime) -> bool:
        return self.constraint is None or self.constraint.active(at)

    def upper_bound(self, prompt_tokens: int, max_output_tokens: int) -> Decimal:
        """The most a call with at most these token counts can cost at this price.

        Every prompt token at the dearest input rate wflo can bill (uncached, cache read or cache write,
        in any tier reachable with ``prompt_tokens``), every output token at the dearest output rate,
        plus the per-request fee. Usage never reports the other units, so they never cost anything.
        """
        input_rate, output_rate, fee = self._flat_rates or self._rates(prompt_tokens)
        return input_rate * prompt_tokens + output_rate * max_output_tokens + fee

    def _rates(self, prompt_tokens: int) -> tuple[Decimal, Decimal, Decimal]:
        """Dearest per-token input and output rates, and the per-request fee."""
        input_rate = output_rate = fee = _ZERO
        for unit in self.units:
            rate = max([unit.price, *(price for start, price in unit.tiers if prompt_tokens > start)])
            rate /= unit.per
            if unit.constant:
                fee += rate
            elif unit.usage_key in _INPUT_KEYS:
                input_rate = max(input_rate, rate)
            elif unit.usage_key in _OUTPUT_KEYS:
                output_rate = max(output_rate, rate)
        return input_rate, output_rate, fee


def _leaf_terms(priced: list[UnitDef]) -> dict[str, tuple[tuple[int, int], ...]]:
    """Each priced unit's leaf count as a linear combination of wflo's usage counts.

    genai-prices counts a unit's own tokens as its reported value minus the leaf counts of every priced
    unit below it (most specific units first); wflo reports only ``USAGE_KEYS``, the rest are zero.
    """
    ordered = sorted(priced, key=lambda unit: (-len(unit.dimensions), unit.usage_key))
    vectors: dict[str, list[int]] = {}
    for unit in ordered:
        vector = [0] * len(USAGE_KEYS)
        if unit.usage_key in USAGE_KEYS:
            vector[USAGE_KEYS.index(unit.usage_key)] = 1
        for below in ordered:
            if below is not unit and unit.dimensions.items() <= below.dimensions.items():
                vector = [a - b for a, b in zip(vector, vectors[below.usage_key], strict=True)]
        vectors[unit.usage_key] = vector
    return {key: tuple((i, c) for i, c in enumerate(vector) if c) for key, vector in vectors.items()}


def _valid_price(version: str, price_key: str, value: object) -> Decimal | genai.TieredPrices:
    """Reject what calc_price would reject on every call, once, when the price is compiled."""
    from genai_prices import types as genai

    if isinstance(value, genai.TieredPrices):
        starts = [tier.start for tier in value.tiers]
        if _is_price(value.base) and starts == sorted(starts) and all(
            _is_price(tier.price) and type(tier.start) is int and tier.start >= 0 for tier in value.tiers
        ):
            return value
    elif isinstance(value, Decimal) and _is_price(value):
        return value
    raise PricingError(f"price {version} has an invalid {price_key}: {value!r}", price_version=version)


def _is_price(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= 0


def genai_usage(usage: Usage) -> genai.Usage:
    """The same usage as genai-prices spells it, to compare wflo's prices with ``calc_price``."""
    from genai_prices import types as genai

    return genai.Usage(**dict(zip(USAGE_KEYS, (usage.input_tokens, usage.output_tokens,
                                               usage.cached_input_tokens, usage.cache_write_tokens,
                                               usage.reasoning_tokens), strict=True)))
