"""The compiled catalog gives exactly what ``genai_prices.calc_price`` gives: same digits, same exponent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from genai_prices import calc_price
from genai_prices.data import providers as CATALOG
from hypothesis import given, settings
from hypothesis import strategies as st

from wflo_core.errors import ModelNotPriced, PricingError
from wflo_core.pricing import PriceCatalog, Usage
from wflo_core.pricing.cost import genai_usage

#: wflo's providers, plus the catalog's only time-of-day prices (deepseek) and its only separately
#: priced reasoning and per-request fees (perplexity).
PROVIDERS = ("openai", "anthropic", "google", "deepseek", "perplexity")
MODELS = [(p.id, m.id) for p in CATALOG if p.id in PROVIDERS for m in p.models]
INSTANTS = [
    datetime(2023, 1, 1, tzinfo=UTC),
    datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC),
    datetime(2025, 6, 10, 2, tzinfo=timezone(timedelta(hours=5))),
    datetime(2026, 3, 13, 16, 45, tzinfo=UTC),
    datetime(2027, 6, 1, 0, 15),  # naive: both sides read it as UTC
]
USAGES = [
    Usage(),
    Usage(input_tokens=1, output_tokens=1),
    Usage(input_tokens=1_234, output_tokens=567, cached_input_tokens=1_000, reasoning_tokens=300),
    Usage(input_tokens=23_012, output_tokens=250, cached_input_tokens=20_000, cache_write_tokens=3_000),
    Usage(
        input_tokens=272_001,
        output_tokens=64_000,
        cached_input_tokens=100_000,
        cache_write_tokens=50_000,
        reasoning_tokens=60_000,
    ),
    Usage(input_tokens=10, cached_input_tokens=11),  # inconsistent: both must refuse it
]


def outcome(price: Callable[[], tuple[Decimal, Decimal, Decimal]]) -> tuple[object, ...]:
    """The three amounts as exact digit tuples, or which kind of refusal."""
    try:
        return tuple(amount.as_tuple() for amount in price())
    except (ModelNotPriced, LookupError):
        return ("not priced",)
    except (PricingError, ValueError):
        return ("refused",)


def assert_identical(catalog: PriceCatalog, provider: str, model: str, usage: Usage, at: datetime) -> None:
    def ours() -> tuple[Decimal, Decimal, Decimal]:
        cost = catalog.cost(provider, model, usage, at)
        return cost.input_usd, cost.output_usd, cost.total_usd

    def theirs() -> tuple[Decimal, Decimal, Decimal]:
        calc = calc_price(genai_usage(usage), model, provider_id=provider, genai_request_timestamp=at)
        return calc.input_price, calc.output_price, calc.total_price

    assert outcome(ours) == outcome(theirs), (provider, model, usage, at)


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def test_the_sweep_covers_what_it_claims() -> None:
    assert len(MODELS) > 200
    assert {"gpt-4o", "o3", "claude-sonnet-4-5", "gemini-2.5-pro", "deepseek-chat"} <= {m for _, m in MODELS}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_model_of_a_provider_prices_identically(catalog: PriceCatalog, provider: str) -> None:
    for model in (m for p, m in MODELS if p == provider):
        for at in INSTANTS:
            for usage in USAGES:
                assert_identical(catalog, provider, model, usage, at)


@settings(max_examples=400, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    counts=st.tuples(*(st.integers(0, 2_000_000) for _ in range(5))),
    at=st.datetimes(datetime(2023, 1, 1), datetime(2028, 1, 1), timezones=st.sampled_from([UTC, None])),
)
def test_random_usages_price_identically(
    catalog: PriceCatalog, model: tuple[str, str], counts: tuple[int, ...], at: datetime
) -> None:
    usage = Usage(*counts)
    assert_identical(catalog, *model, usage, at)
    consistent = Usage(
        input_tokens=counts[0],
        cached_input_tokens=min(counts[2], counts[0]),
        cache_write_tokens=min(counts[3], counts[0] - min(counts[2], counts[0])),
        output_tokens=counts[1],
        reasoning_tokens=min(counts[4], counts[1]),
    )
    assert_identical(catalog, *model, consistent, at)
