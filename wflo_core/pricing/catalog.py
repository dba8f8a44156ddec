"""The price catalog: genai-prices' bundled snapshot plus the user's overrides file.

A provider/model is resolved once (overrides first, then genai-prices) into a ``ModelPrice`` holding
every dated price it has had, compiled; after that, pricing a call is a dict lookup, picking the price
in effect and a few ``Decimal`` operations. What to do with a model nobody has priced is the
catalog's ``unknown_model_policy``: refuse it before the call (``error``), price it at zero with a
warning (``warn``) or price it as a named ``fallback`` model.

Importing genai-prices and loading its snapshot costs a quarter of a second, in every process that
prices a call. So what a model resolved to in the snapshot (its priced units, already validated and
decomposed) is kept in a cache per genai-prices version and version of this code (``cache_dir``, by
default ``~/.cache/wflo``); a process whose models are all in it never imports genai-prices. The
units read back are compiled by the same code as fresh ones, so the prices are the same to the digit.
A cache file that cannot be read is ignored, one that cannot be written is not written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from importlib.metadata import version as package_version
from pathlib import Path
from time import time as time_now
from typing import TYPE_CHECKING, Any, Literal

from wflo_core.calls import Usage
from wflo_core.config import WfloSettings, default_cache_dir, keep_cached
from wflo_core.errors import ConfigError, ModelNotPriced
from wflo_core.pricing.cost import PricePoint, StartDate
from wflo_core.pricing.overrides import EXAMPLE_PATH, PriceOverrides, load_overrides
from wflo_core.pricing.pricer import Cost, PricedUnit, Pricer

if TYPE_CHECKING:
    from genai_prices import types as genai
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.units import UnitRegistry

UnknownModelPolicy = Literal["error", "warn", "fallback"]
UNPRICED_VERSION = "unpriced"
CATALOG_VERSION = f"genai-prices=={package_version('genai-prices')}"
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
    _latest_first: tuple[tuple[float, PricePoint], ...] | None = field(init=False, repr=False, compare=False)
    """Each point with the POSIX time its UTC start date begins, latest first, when all points are
    date-constrained (or always valid: ``-inf``), else ``None``."""
    price: Pricer = field(init=False, repr=False, compare=False)
    """The price in effect at the instant given, applied to the usage: ``cost`` without a method call."""

    def __post_init__(self) -> None:
        constraints = [point.constraint for point in self.points]
        latest_first = None
        if all(c is None or isinstance(c, StartDate) for c in constraints):
            latest_first = tuple(
                (datetime.combine(c.start_date, time(), UTC).timestamp()
                 if isinstance(c, StartDate) else -math.inf, point)
                for c, point in zip(reversed(constraints), reversed(self.points), strict=True)
            )
        object.__setattr__(self, "_latest_first", latest_first)
        object.__setattr__(self, "price", self._pricer())

    def price_at(self, at: datetime | None = None) -> PricePoint | None:
        """The price in effect at ``at`` (default now): the latest active one, else the first.

        Naive datetimes are UTC, as in genai-prices.
        """
        points = self.points
        if len(points) <= 1:
            return points[0] if points else None
        if self._latest_first is None:
            at = at or datetime.now(tz=UTC)
            return next((point for point in reversed(points) if point.active(at)), points[0])
        moment = _moment(at)
        return next((point for begins, point in self._latest_first if moment >= begins), points[0])

    def cost(self, usage: Usage, at: datetime | None = None) -> Cost:
        return self.price(usage, at)

    def upper_bound(self, prompt_tokens: int, max_output_tokens: int, at: datetime | None = None) -> Decimal:
        point = self.price_at(at)
        return Decimal(0) if point is None else point.upper_bound(prompt_tokens, max_output_tokens)

    def _pricer(self) -> Pricer:
        """One price needs no choosing. A dated one is chosen by comparing ``at`` with the instant each
        price starts, kept as an aware and as a naive (UTC) datetime, like ``at``, and as a POSIX time
        for now: converting ``at`` itself (``timestamp()``) would cost more than the arithmetic."""
        points, latest_first = self.points, self._latest_first
        if len(points) == 1:
            return points[0].price
        unpriced = Cost(Decimal(0), Decimal(0), Decimal(0), UNPRICED_VERSION)
        if not points or latest_first is None:  # unpriced, or time-of-day prices

            def by_constraint(usage: Usage, at: datetime | None = None) -> Cost:
                point = self.price_at(at)
                return unpriced if point is None else point.price(usage, at)

            return by_constraint
        posix: list[tuple[float, Pricer]] = []
        otherwise = points[0].price
        for begins, point in latest_first:
            if begins == -math.inf:  # always valid: what no later start date applies to
                otherwise = point.price
                break
            posix.append((begins, point.price))
        aware = tuple((datetime.fromtimestamp(begins, UTC), pricer) for begins, pricer in posix)
        naive = tuple((begins.replace(tzinfo=None), pricer) for begins, pricer in aware)
        now = tuple(posix)

        def price(usage: Usage, at: datetime | None = None) -> Cost:
            if at is None:
                moment = time_now()
                for begins, pricer in now:
                    if moment >= begins:
                        return pricer(usage, at)
            else:
                for instant, pricer in aware if at.tzinfo is not None else naive:
                    if at >= instant:
                        return pricer(usage, at)
            return otherwise(usage, at)

        return price


class PriceCatalog:
    """Prices calls in USD, exactly as genai-prices would, with overrides and an unknown-model policy."""

    def __init__(
        self,
        overrides_path: Path | None = None,
        unknown_model_policy: UnknownModelPolicy = "error",
        fallback_model: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._genai: tuple[DataSnapshot, UnitRegistry] | None = None
        self._cache = _SnapshotCache(cache_dir) if cache_dir is not None else None
        self._overrides: PriceOverrides | None = load_overrides(overrides_path) if overrides_path else None
        self._policy = unknown_model_policy
        self._resolved: dict[str, dict[str, ModelPrice]] = {}
        """By provider, then model: two lookups cost less than building and hashing a tuple key."""
        self._fallback = self._resolve_fallback(unknown_model_policy, fallback_model)

    @classmethod
    def from_settings(cls, settings: WfloSettings) -> PriceCatalog:
        return cls(settings.price_overrides_path, settings.unknown_model_policy, settings.fallback_model,
                   cache_dir=default_cache_dir())

    def resolve(self, provider: str, model: str) -> ModelPrice:
        """The model's prices, looked up once; raises ``ModelNotPriced`` under the ``error`` policy."""
        models = self._resolved.setdefault(provider, {})
        try:
            return models[model]
        except KeyError:
            pass
        resolved = self._lookup(provider, model)
        if resolved is None:
            resolved = self._unknown(provider, model)
        models[model] = resolved
        return resolved

    def cost(self, provider: str, model: str, usage: Usage, at: datetime | None = None) -> Cost:
        """What a call with this usage cost, at the price in effect at ``at`` (default now)."""
        try:
            resolved = self._resolved[provider][model]
        except KeyError:
            resolved = self.resolve(provider, model)
        return resolved.price(usage, at)

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
            _, registry = self._genai_prices()
            return ModelPrice(provider, model, tuple(
                PricePoint.compile(
                    entry.to_genai(), registry,
                    version=f"override:{sha}:{provider}/{entry.model}@{entry.effective_from or 'always'}",
                    constraint=StartDate(entry.effective_from) if entry.effective_from else None,
                )
                for entry in entries
            ))
        if provider in OVERRIDES_ONLY_PROVIDERS:
            return None
        if self._cache is not None and (points := self._cache.get(provider, model)) is not None:
            return ModelPrice(provider, model, points)
        found = self._from_snapshot(provider, model)
        if found is not None and self._cache is not None:
            self._cache.put(provider, model, found.points)
        return found

    def _from_snapshot(self, provider: str, model: str) -> ModelPrice | None:
        from genai_prices import types as genai

        snapshot, registry = self._genai_prices()
        try:
            found_provider, found = snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        name = f"{CATALOG_VERSION}:{found_provider.id}/{found.id}"
        if isinstance(found.prices, genai.ModelPrice):
            dated = [genai.ConditionalPrice(constraint=None, prices=found.prices)]
        else:
            dated = found.prices
        return ModelPrice(provider, model, tuple(
            PricePoint.compile(entry.prices, registry, version=name + _label(entry.constraint),
                               constraint=StartDate(entry.constraint.start_date)
                               if isinstance(entry.constraint, genai.StartDateConstraint) else entry.constraint)
            for entry in dated
        ))

    def _genai_prices(self) -> tuple[DataSnapshot, UnitRegistry]:
        """genai-prices' snapshot and unit registry, loaded on first use."""
        if self._genai is None:
            from genai_prices import data_snapshot
            from genai_prices.data_units import unit_data
            from genai_prices.units import UnitRegistry

            self._genai = data_snapshot.get_snapshot(), UnitRegistry(unit_data)
        return self._genai

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


def _moment(at: datetime | None) -> float:
    """``at`` (default now) as a POSIX time; naive datetimes are UTC, as in genai-prices."""
    if at is None:
        return time_now()
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def _label(constraint: genai.StartDateConstraint | genai.TimeOfDateConstraint | None) -> str:
    """Which of a model's dated prices this is, for the price version string."""
    from genai_prices import types as genai

    if isinstance(constraint, genai.StartDateConstraint):
        return f"@{constraint.start_date.isoformat()}"
    if isinstance(constraint, genai.TimeOfDateConstraint):
        return f"@{constraint.start_time.isoformat('minutes')}-{constraint.end_time.isoformat('minutes')}"
    return ""


_CODE_VERSION = hashlib.sha256(b"".join(
    (Path(__file__).parent / name).read_bytes() for name in ("catalog.py", "cost.py", "pricer.py")
)).hexdigest()[:16]
"""Of the code that turns a snapshot entry into priced units: a change to it starts a new cache file."""


class _SnapshotCache:
    """What models resolved to in genai-prices' snapshot, as priced units: one small JSON file per
    model in a folder per genai-prices version and version of this code, written whole (a rename), so
    concurrent processes never see half a file. Only models whose prices are all undated or dated by
    start date are kept (time-of-day prices always come from genai-prices)."""

    def __init__(self, directory: Path) -> None:
        self._folder = directory / f"prices-{CATALOG_VERSION.replace('==', '-')}-{_CODE_VERSION}"

    def get(self, provider: str, model: str) -> tuple[PricePoint, ...] | None:
        try:
            entry = json.loads(self._file(provider, model).read_text())
            if entry["provider"] != provider or entry["model"] != model:
                return None
            return tuple(_point(point) for point in entry["points"])
        except (OSError, TypeError, ValueError, KeyError, InvalidOperation):  # absent or damaged: look it up
            return None

    def put(self, provider: str, model: str, points: tuple[PricePoint, ...]) -> None:
        if not all(point.constraint is None or isinstance(point.constraint, StartDate) for point in points):
            return
        entry = {"provider": provider, "model": model, "points": [_point_json(point) for point in points]}
        keep_cached(self._file(provider, model), entry)  # if it cannot be written, the next process looks it up

    def _file(self, provider: str, model: str) -> Path:
        name = hashlib.sha256("\n".join((provider, model)).encode()).hexdigest()[:32]
        return self._folder / f"{name}.json"


def _point_json(point: PricePoint) -> dict[str, Any]:
    start = point.constraint.start_date.isoformat() if isinstance(point.constraint, StartDate) else None
    return {"version": point.version, "start_date": start, "units": [
        [u.usage_key, u.direction, str(u.price), [[t, str(p)] for t, p in u.tiers], u.per,
         [list(term) for term in u.terms], u.constant]
        for u in point.units
    ]}


def _point(data: dict[str, Any]) -> PricePoint:
    """A cached price, checked as strictly as it was when compiled: a tampered file cannot price a
    call at a negative, infinite or malformed amount."""
    units = tuple(
        PricedUnit(str(key), _int(direction), _price(price), tuple((_int(t), _price(p)) for t, p in tiers),
                   _int(per), tuple((_int(i), _int(c)) for i, c in terms), _int(constant))
        for key, direction, price, tiers, per, terms, constant in data["units"]
    )
    start = data["start_date"]
    return PricePoint(str(data["version"]), StartDate(date.fromisoformat(start)) if start else None, units,
                      any(unit.tiers for unit in units))


def _price(text: object) -> Decimal:
    value = Decimal(str(text)) if isinstance(text, str) else None
    if value is None or not value.is_finite() or value < 0:
        raise ValueError(f"not a price: {text!r}")
    return value


def _int(value: object) -> int:
    if type(value) is not int:
        raise ValueError(f"not an integer: {value!r}")
    return value


def _where_looked(provider: str) -> str:
    if provider in OVERRIDES_ONLY_PROVIDERS:
        return f"{provider} models are priced only from the overrides file, and it has no entry"
    return f"neither the overrides file nor {CATALOG_VERSION} knows it"
