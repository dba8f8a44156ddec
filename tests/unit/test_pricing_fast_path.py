"""The generated fast path prices exactly as ``calc_price`` does: every catalog model, overrides, tiers,
cache reads and writes, reasoning, free and audio-priced models, zero and huge usages, low precision.

The oracle is genai-prices itself: ``calc_price`` for catalog models, and ``ModelPrice.calc_price`` on
the genai-prices form of an override. Amounts are compared digit for digit, exponent included.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import calc_price
from genai_prices import types as genai
from genai_prices.data import providers as CATALOG

from tests.unit.test_pricing_identity import outcome
from wflo_core.errors import ModelNotPriced, UsageInvalid
from wflo_core.pricing import PriceCatalog, Usage, load_overrides
from wflo_core.pricing.cost import genai_usage

MTOK = Decimal(1_000_000)
AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
HUGE = 10**30
USAGES = [
    Usage(),
    Usage(input_tokens=1, output_tokens=1),
    Usage(input_tokens=1_234, output_tokens=567, cached_input_tokens=1_000, reasoning_tokens=300),
    Usage(input_tokens=23_010, output_tokens=250, cached_input_tokens=20_000, cache_write_tokens=3_000),
    Usage(input_tokens=200_000, output_tokens=40_000, cached_input_tokens=40_000),  # tier boundaries
    Usage(input_tokens=272_001, output_tokens=64_000, cached_input_tokens=100_000, cache_write_tokens=50_000,
          reasoning_tokens=60_000),
    Usage(input_tokens=10**15, output_tokens=10**15 - 1, cached_input_tokens=10**14, reasoning_tokens=10**14),
    Usage(input_tokens=10**21 + 7, output_tokens=3, cached_input_tokens=10**20),  # past the fast path's limit
    Usage(input_tokens=HUGE, output_tokens=HUGE, cached_input_tokens=HUGE // 3, cache_write_tokens=HUGE // 7),
    Usage(input_tokens=10, cached_input_tokens=11),  # inconsistent: both refuse it
]


def _amounts(price: Callable[[], object]) -> tuple[object, ...]:
    return outcome(lambda: tuple(getattr(price(), name) for name in ("input_usd", "output_usd", "total_usd")))


def _oracle(provider: str, model: str, usage: Usage) -> tuple[object, ...]:
    def theirs() -> tuple[Decimal, Decimal, Decimal]:
        calc = calc_price(genai_usage(usage), model, provider_id=provider, genai_request_timestamp=AT)
        return calc.input_price, calc.output_price, calc.total_price

    return outcome(theirs)


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def test_every_price_in_the_catalog_is_compiled_to_the_fast_path(catalog: PriceCatalog) -> None:
    """Else the sweep below would test the fold only."""
    points = [point for provider in CATALOG for model in provider.models
              for point in _points(catalog, provider.id, model.id)]
    assert len(points) > 2_000
    assert {point.price.__code__.co_filename for point in points} == {"<wflo generated price>"}


@pytest.mark.parametrize("provider", [provider.id for provider in CATALOG])
def test_every_model_of_every_provider_prices_as_calc_price(catalog: PriceCatalog, provider: str) -> None:
    models = next(p for p in CATALOG if p.id == provider).models
    for model in models:
        for usage in USAGES:
            ours = _amounts(lambda: catalog.cost(provider, model.id, usage, AT))  # noqa: B023
            assert ours == _oracle(provider, model.id, usage), (provider, model.id, usage)


@pytest.mark.parametrize("precision", [6, 12, 27])
def test_a_context_with_fewer_digits_prices_as_calc_price_in_it(catalog: PriceCatalog, precision: int) -> None:
    """The fast path is exact; in a context that rounds, the fold rounds as calc_price does."""
    models = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-pro"),
              ("perplexity", "sonar-reasoning"), ("openai", "gpt-4o-audio-preview")]
    with decimal.localcontext() as context:
        context.prec = precision
        for provider, model in models:
            for usage in USAGES:
                ours = _amounts(lambda: catalog.cost(provider, model, usage, AT))  # noqa: B023
                assert ours == _oracle(provider, model, usage), (precision, provider, model, usage)


def test_overrides_price_as_their_genai_prices_form(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "models:\n"
        "  - {provider: openai_compatible, model: llama, input_mtok: '0.05', output_mtok: '0.08',\n"
        "     cached_input_mtok: '0.01', cache_write_mtok: '0.0625', reasoning_mtok: '0.5'}\n"
        "  - {provider: openai_compatible, model: round, input_mtok: '2', output_mtok: '10.0',\n"
        "     cached_input_mtok: '0'}\n"
        "  - {provider: openai_compatible, model: free, input_mtok: '0', output_mtok: '0.000'}\n"
        "  - {provider: openai_compatible, model: coarse, input_mtok: '1E+1', output_mtok: '250'}\n"
    )
    catalog = PriceCatalog(overrides_path=path)
    usages = [*USAGES, Usage(input_tokens=40_000, output_tokens=3_000, reasoning_tokens=2_999)]
    for entry in load_overrides(path).entries:
        price = entry.to_genai()
        for usage in usages:
            if usage.input_tokens >= HUGE:  # beyond 28 digits, rounding depends on the order of the sums
                cost = catalog.cost("openai_compatible", entry.model, usage, AT)
                assert cost.total_usd == cost.input_usd + cost.output_usd  # wflo's order, as before
                continue
            ours = _amounts(lambda: catalog.cost("openai_compatible", entry.model, usage, AT))  # noqa: B023
            assert ours == _override_oracle(price, usage), (entry.model, usage)


def test_hand_checked_figures_from_the_catalog_data(catalog: PriceCatalog) -> None:
    gpt = _flat("openai", "gpt-4o")
    cost = catalog.cost("openai", "gpt-4o", Usage(input_tokens=1_234, output_tokens=567, cached_input_tokens=1_000))
    assert cost.input_usd == (234 * gpt.input_mtok + 1_000 * gpt.cache_read_mtok) / MTOK
    assert cost.output_usd == 567 * gpt.output_mtok / MTOK
    assert cost.total_usd == cost.input_usd + cost.output_usd

    sonnet = _flat("anthropic", "claude-sonnet-4-5")
    assert isinstance(sonnet.input_mtok, genai.TieredPrices)
    tier = sonnet.input_mtok.tiers[0].start
    long_prompt = Usage(input_tokens=tier + 1, cached_input_tokens=1_000, cache_write_tokens=2_000,
                        output_tokens=10)
    cost = catalog.cost("anthropic", "claude-sonnet-4-5", long_prompt)

    def above(value: Decimal | genai.TieredPrices | None) -> Decimal:
        assert isinstance(value, genai.TieredPrices)
        return value.tiers[0].price

    assert cost.input_usd == ((tier - 2_999) * above(sonnet.input_mtok) + 1_000 * above(sonnet.cache_read_mtok)
                              + 2_000 * above(sonnet.cache_write_mtok)) / MTOK
    assert cost.output_usd == 10 * above(sonnet.output_mtok) / MTOK

    sonar = _flat("perplexity", "sonar-reasoning")
    assert sonar.requests_kcount is not None
    cost = catalog.cost("perplexity", "sonar-reasoning", Usage())
    assert (cost.input_usd, cost.output_usd, cost.total_usd) == (0, 0, sonar.requests_kcount / 1_000)


def test_zero_usage_keeps_the_exponent_of_every_price(catalog: PriceCatalog) -> None:
    """A zero amount still says how many decimals its prices have, as calc_price's zeros do."""
    cost = catalog.cost("openai", "gpt-4o", Usage())
    assert cost.input_usd.as_tuple().exponent == min(
        _flat("openai", "gpt-4o").input_mtok.as_tuple().exponent,  # type: ignore[union-attr]
        _flat("openai", "gpt-4o").cache_read_mtok.as_tuple().exponent,  # type: ignore[union-attr]
    )


def test_bad_usage_gets_the_same_message_on_both_paths(catalog: PriceCatalog) -> None:
    for scale in (1, HUGE):  # the fast path, then the fold
        usage = Usage(input_tokens=10 * scale, cached_input_tokens=11 * scale)
        with pytest.raises(UsageInvalid) as caught:
            catalog.cost("openai", "gpt-4o", usage, AT)
        assert str(caught.value) == (f"UsageInvalid: cannot price {usage}: {usage.inconsistency()}; "
                                     "fix the usage normalization for this provider")


def _points(catalog: PriceCatalog, provider: str, model: str) -> tuple[object, ...]:
    try:
        return catalog.resolve(provider, model).points
    except ModelNotPriced:  # the catalog lists a few models twice under names it cannot look up
        return ()


def _flat(provider: str, model: str) -> genai.ModelPrice:
    found = next(m for p in CATALOG if p.id == provider for m in p.models if m.id == model)
    assert isinstance(found.prices, genai.ModelPrice)
    return found.prices


def _override_oracle(price: genai.ModelPrice, usage: Usage) -> tuple[object, ...]:
    def theirs() -> tuple[Decimal, Decimal, Decimal]:
        calc = price.calc_price(genai_usage(usage))
        return calc["input_price"], calc["output_price"], calc["total_price"]

    return outcome(theirs)
