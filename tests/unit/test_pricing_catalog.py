"""Catalog prices against genai-prices' data, computed here by hand from the data itself."""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from genai_prices import types as genai
from genai_prices.data import providers as CATALOG
from hypothesis import given, settings
from hypothesis import strategies as st

from wflo_core.config import load_settings
from wflo_core.errors import ConfigError, ModelNotPriced, UsageInvalid
from wflo_core.pricing import (
    CATALOG_VERSION,
    UNPRICED_VERSION,
    PriceCatalog,
    UnpricedModelWarning,
    Usage,
    usage_from_anthropic,
)

MTOK = Decimal(1_000_000)
AT = datetime(2025, 10, 1, 12, tzinfo=UTC)


def catalog_entry(provider_id: str, model_id: str) -> genai.ModelInfo:
    provider = next(p for p in CATALOG if p.id == provider_id)
    return next(m for m in provider.models if m.id == model_id)


def flat_price(provider_id: str, model_id: str) -> genai.ModelPrice:
    prices = catalog_entry(provider_id, model_id).prices
    assert isinstance(prices, genai.ModelPrice), f"{model_id} has dated prices; pick a flat-priced model"
    return prices


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def test_openai_gpt5_cached_input_priced_at_cache_read_price(catalog: PriceCatalog) -> None:
    price = flat_price("openai", "gpt-5")
    assert price.output_reasoning_mtok is None  # reasoning is plain output for gpt-5
    usage = Usage(input_tokens=12_000, cached_input_tokens=8_000, output_tokens=3_000, reasoning_tokens=2_000)

    cost = catalog.cost("openai", "gpt-5", usage, AT)

    expected_input = (4_000 * price.input_mtok + 8_000 * price.cache_read_mtok) / MTOK
    expected_output = 3_000 * price.output_mtok / MTOK
    assert cost.input_usd == expected_input
    assert cost.output_usd == expected_output
    assert cost.total_usd == expected_input + expected_output
    assert cost.price_version == f"{CATALOG_VERSION}:openai/gpt-5"
    uncached = catalog.cost("openai", "gpt-5", Usage(input_tokens=12_000, output_tokens=3_000), AT)
    assert uncached.input_usd - cost.input_usd == 8_000 * (price.input_mtok - price.cache_read_mtok) / MTOK


def test_anthropic_cache_reads_and_writes_from_a_real_response(catalog: PriceCatalog) -> None:
    price = flat_price("anthropic", "claude-opus-4-1")
    usage = usage_from_anthropic(
        {
            "usage": {
                "input_tokens": 12,
                "output_tokens": 250,
                "cache_creation_input_tokens": 3_000,
                "cache_read_input_tokens": 20_000,
            }
        }
    )

    cost = catalog.cost("anthropic", "claude-opus-4-1-20250805", usage, AT)

    assert price.cache_write_mtok > price.input_mtok > price.cache_read_mtok
    expected_input = (
        12 * price.input_mtok + 20_000 * price.cache_read_mtok + 3_000 * price.cache_write_mtok
    ) / MTOK
    assert cost.input_usd == expected_input
    assert cost.output_usd == 250 * price.output_mtok / MTOK
    assert cost.price_version == f"{CATALOG_VERSION}:anthropic/claude-opus-4-1"


def test_google_gemini_flash(catalog: PriceCatalog) -> None:
    price = flat_price("google", "gemini-2.5-flash")
    usage = Usage(
        input_tokens=50_000, cached_input_tokens=30_000, output_tokens=4_000, reasoning_tokens=3_000
    )

    cost = catalog.cost("google", "gemini-2.5-flash", usage, AT)

    assert cost.input_usd == (20_000 * price.input_mtok + 30_000 * price.cache_read_mtok) / MTOK
    assert cost.output_usd == 4_000 * price.output_mtok / MTOK
    assert cost.price_version == f"{CATALOG_VERSION}:google/gemini-2.5-flash"


@pytest.mark.parametrize(
    ("provider", "model"), [("google", "gemini-2.5-pro"), ("anthropic", "claude-sonnet-4-5")]
)
def test_long_prompts_pay_the_tier_price_on_every_token(
    catalog: PriceCatalog, provider: str, model: str
) -> None:
    price = flat_price(provider, model)
    assert isinstance(price.input_mtok, genai.TieredPrices)
    threshold = price.input_mtok.tiers[0].start

    def tier(value: genai.TieredPrices, tokens: int) -> Decimal:
        return value.tiers[0].price if tokens > threshold else value.base

    for tokens in (threshold, threshold + 1):
        cost = catalog.cost(
            provider, model, Usage(input_tokens=tokens, cached_input_tokens=1_000, output_tokens=2_000), AT
        )
        assert (
            cost.input_usd
            == (
                (tokens - 1_000) * tier(price.input_mtok, tokens)
                + 1_000 * tier(price.cache_read_mtok, tokens)
            )
            / MTOK
        )
        assert cost.output_usd == 2_000 * tier(price.output_mtok, tokens) / MTOK


def test_dated_price_history_picks_the_price_in_effect(catalog: PriceCatalog) -> None:
    history = catalog_entry("openai", "o3").prices
    assert isinstance(history, list) and len(history) == 2
    change = history[1].constraint
    assert isinstance(change, genai.StartDateConstraint)
    day = datetime(change.start_date.year, change.start_date.month, change.start_date.day, tzinfo=UTC)
    usage = Usage(input_tokens=10_000, output_tokens=1_000)

    def expected(price: genai.ModelPrice) -> Decimal:
        return (10_000 * price.input_mtok + 1_000 * price.output_mtok) / MTOK

    before = catalog.cost("openai", "o3", usage, day - timedelta(seconds=1))
    after = catalog.cost("openai", "o3", usage, day)
    # 02:00 at UTC+5 on the change date is still the previous day in UTC
    east = catalog.cost("openai", "o3", usage, day.replace(hour=2, tzinfo=timezone(timedelta(hours=5))))

    assert before.total_usd == expected(history[0].prices) != after.total_usd
    assert after.total_usd == expected(history[1].prices)
    assert east == before
    assert before.price_version == f"{CATALOG_VERSION}:openai/o3"
    assert after.price_version == f"{CATALOG_VERSION}:openai/o3@{change.start_date.isoformat()}"


def test_separately_priced_reasoning_and_per_request_fee(catalog: PriceCatalog) -> None:
    research = flat_price("perplexity", "sonar-deep-research")
    usage = Usage(input_tokens=1_000, output_tokens=5_000, reasoning_tokens=4_000)
    cost = catalog.cost("perplexity", "sonar-deep-research", usage, AT)
    assert cost.output_usd == (1_000 * research.output_mtok + 4_000 * research.output_reasoning_mtok) / MTOK

    sonar = flat_price("perplexity", "sonar")
    cost = catalog.cost("perplexity", "sonar", Usage(input_tokens=1_000, output_tokens=100), AT)
    fee = sonar.requests_kcount / 1000
    assert cost.total_usd == cost.input_usd + cost.output_usd + fee
    assert cost.input_usd == 1_000 * sonar.input_mtok / MTOK


def test_upper_bound_takes_the_dearest_input_rate(catalog: PriceCatalog) -> None:
    gpt = flat_price("openai", "gpt-4o")
    assert (
        catalog.upper_bound("openai", "gpt-4o", 10_000, 500, AT)
        == (10_000 * gpt.input_mtok + 500 * gpt.output_mtok) / MTOK
    )
    # Anthropic cache writes cost more than uncached input, so they set the bound
    opus = flat_price("anthropic", "claude-opus-4-1")
    assert (
        catalog.upper_bound("anthropic", "claude-opus-4-1", 10_000, 500, AT)
        == (10_000 * opus.cache_write_mtok + 500 * opus.output_mtok) / MTOK
    )


BOUND_MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "o3"),
    ("anthropic", "claude-opus-4-1"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-pro"),
    ("perplexity", "sonar"),
    ("perplexity", "sonar-deep-research"),
    ("deepseek", "deepseek-chat"),
]


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(BOUND_MODELS),
    prompt=st.integers(0, 600_000),
    max_output=st.integers(0, 100_000),
    at=st.datetimes(datetime(2024, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    data=st.data(),
)
def test_upper_bound_is_never_below_the_actual_cost(
    catalog: PriceCatalog,
    model: tuple[str, str],
    prompt: int,
    max_output: int,
    at: datetime,
    data: st.DataObject,
) -> None:
    used_input = data.draw(st.integers(0, prompt))
    cached = data.draw(st.integers(0, used_input))
    written = data.draw(st.integers(0, used_input - cached))
    output = data.draw(st.integers(0, max_output))
    usage = Usage(
        input_tokens=used_input,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=output,
        reasoning_tokens=data.draw(st.integers(0, output)),
    )
    assert catalog.upper_bound(*model, prompt, max_output, at) >= catalog.cost(*model, usage, at).total_usd


@pytest.mark.parametrize("model", BOUND_MODELS)
@pytest.mark.parametrize("corner", ["uncached", "cached", "written"])
@pytest.mark.parametrize("prompt", [1_000, 250_000, 300_000])
def test_upper_bound_covers_every_extreme_usage(
    catalog: PriceCatalog, model: tuple[str, str], corner: str, prompt: int
) -> None:
    """All prompt tokens in one billing category, all output tokens used (as reasoning or not)."""
    split = {
        "cached_input_tokens": prompt if corner == "cached" else 0,
        "cache_write_tokens": prompt if corner == "written" else 0,
    }
    for at in (AT, datetime(2024, 6, 1, 3, tzinfo=UTC), datetime(2027, 6, 1, 17, tzinfo=UTC)):
        bound = catalog.upper_bound(*model, prompt, 4_000, at)
        for reasoning in (0, 4_000):
            usage = Usage(input_tokens=prompt, output_tokens=4_000, reasoning_tokens=reasoning, **split)
            assert bound >= catalog.cost(*model, usage, at).total_usd


def test_resolution_is_cached(catalog: PriceCatalog) -> None:
    assert catalog.resolve("openai", "gpt-4o") is catalog.resolve("openai", "gpt-4o")


def test_inconsistent_usage_is_refused(catalog: PriceCatalog) -> None:
    with pytest.raises(UsageInvalid, match="exceed input_tokens"):
        catalog.cost("openai", "gpt-4o", Usage(input_tokens=10, cached_input_tokens=11), AT)


def test_unknown_model_is_refused_before_the_call_with_the_three_fixes(catalog: PriceCatalog) -> None:
    with pytest.raises(ModelNotPriced) as caught:
        catalog.upper_bound("openai", "gpt-nonexistent-9", 100, 100)
    message = str(caught.value)
    assert "openai" in message and "'gpt-nonexistent-9'" in message
    for fix in (
        "WFLO_PRICE_OVERRIDES_PATH",
        "WFLO_UNKNOWN_MODEL_POLICY=warn",
        "WFLO_UNKNOWN_MODEL_POLICY=fallback",
        "WFLO_FALLBACK_MODEL",
    ):
        assert fix in message
    assert (caught.value.provider, caught.value.model) == ("openai", "gpt-nonexistent-9")
    revived = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(revived, ModelNotPriced) and str(revived) == message
    with pytest.raises(ModelNotPriced):
        catalog.cost("no-such-provider", "gpt-4o", Usage(input_tokens=1))


def test_self_hosted_models_are_never_priced_from_the_cloud_catalog(catalog: PriceCatalog) -> None:
    """genai-prices would match ``openai_compatible`` to OpenAI; a local gpt-oss is not OpenAI-billed."""
    with pytest.raises(ModelNotPriced, match="only from the overrides file"):
        catalog.cost("openai_compatible", "gpt-4o", Usage(input_tokens=1))


def test_warn_policy_records_zero_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PriceCatalog(unknown_model_policy="warn")
    with caplog.at_level(logging.WARNING), pytest.warns(UnpricedModelWarning, match="my-private-model"):
        cost = catalog.cost("openai_compatible", "my-private-model", Usage(input_tokens=50, output_tokens=9))
    assert (cost.total_usd, cost.input_usd, cost.output_usd) == (0, 0, 0)
    assert cost.price_version == UNPRICED_VERSION
    assert catalog.upper_bound("openai_compatible", "my-private-model", 10**6, 10**6) == 0
    assert "my-private-model" in caplog.text


def test_fallback_policy_prices_like_the_named_model() -> None:
    catalog = PriceCatalog(unknown_model_policy="fallback", fallback_model="openai:gpt-4o-mini")
    usage = Usage(input_tokens=7_000, cached_input_tokens=1_000, output_tokens=700)
    cost = catalog.cost("openai_compatible", "mystery", usage, AT)
    mini = flat_price("openai", "gpt-4o-mini")
    assert cost.input_usd == (6_000 * mini.input_mtok + 1_000 * mini.cache_read_mtok) / MTOK
    assert cost.price_version == f"fallback:openai_compatible/mystery={CATALOG_VERSION}:openai/gpt-4o-mini"
    assert catalog.upper_bound("openai_compatible", "mystery", 100, 10, AT) == catalog.upper_bound(
        "openai", "gpt-4o-mini", 100, 10, AT
    )


@pytest.mark.parametrize("fallback", [None, "gpt-4o-mini", "openai:no-such-model"])
def test_fallback_policy_needs_a_priced_fallback(fallback: str | None) -> None:
    with pytest.raises(ConfigError, match="WFLO_FALLBACK_MODEL"):
        PriceCatalog(unknown_model_policy="fallback", fallback_model=fallback)


def test_catalog_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFLO_UNKNOWN_MODEL_POLICY", "fallback")
    monkeypatch.setenv("WFLO_FALLBACK_MODEL", "anthropic:claude-haiku-4-5")
    catalog = PriceCatalog.from_settings(load_settings())
    version = catalog.cost("openai_compatible", "llama", Usage(input_tokens=1), AT).price_version
    assert version == f"fallback:openai_compatible/llama={CATALOG_VERSION}:anthropic/claude-haiku-4-5"
