"""The user's price overrides file: exact prices for private models, and errors that name the field."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from wflo_core.errors import ConfigError
from wflo_core.pricing import CATALOG_VERSION, PriceCatalog, Usage, load_overrides
from wflo_core.pricing.cost import genai_usage
from wflo_core.pricing.overrides import EXAMPLE_PATH

MTOK = Decimal(1_000_000)

OVERRIDES = """
models:
  - provider: openai_compatible
    model: Llama-3.1-8B-Instruct
    input_mtok: "0.05"
    output_mtok: "0.08"
    cached_input_mtok: "0.01"
    cache_write_mtok: "0.0625"
    reasoning_mtok: "0.5"
  - provider: openai_compatible
    model: qwen
    input_mtok: 0.4
    output_mtok: 1.2
  - provider: openai_compatible
    model: qwen
    effective_from: 2025-07-01
    input_mtok: "0.2"
    output_mtok: "0.6"
  - provider: openai
    model: gpt-4o
    input_mtok: "2"
    output_mtok: "8"
"""


@pytest.fixture
def overrides_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(OVERRIDES)
    return path


def test_self_hosted_model_priced_from_every_override_field(overrides_file: Path) -> None:
    catalog = PriceCatalog(overrides_file)
    usage = Usage(
        input_tokens=10_000,
        cached_input_tokens=4_000,
        cache_write_tokens=1_000,
        output_tokens=2_000,
        reasoning_tokens=1_500,
    )

    cost = catalog.cost("openai_compatible", "llama-3.1-8b-instruct", usage)

    assert (
        cost.input_usd
        == (Decimal("5000") * Decimal("0.05") + 4_000 * Decimal("0.01") + 1_000 * Decimal("0.0625")) / MTOK
    )
    assert cost.output_usd == (500 * Decimal("0.08") + 1_500 * Decimal("0.5")) / MTOK
    sha = hashlib.sha256(overrides_file.read_bytes()).hexdigest()[:12]
    assert cost.price_version == f"override:{sha}:openai_compatible/Llama-3.1-8B-Instruct@always"
    # priced by the same arithmetic as genai-prices, digit for digit
    [entry] = load_overrides(overrides_file).prices_for("openai_compatible", "LLAMA-3.1-8b-instruct")
    expected = entry.to_genai().calc_price(genai_usage(usage))
    assert cost.total_usd.as_tuple() == expected["total_price"].as_tuple()


def test_yaml_numbers_stay_exact(overrides_file: Path) -> None:
    cost = PriceCatalog(overrides_file).cost(
        "openai_compatible", "qwen", Usage(input_tokens=1_000_000), datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert cost.input_usd == Decimal("0.4")


def test_effective_dates_pick_the_price(overrides_file: Path) -> None:
    catalog = PriceCatalog(overrides_file)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    before = catalog.cost("openai_compatible", "qwen", usage, datetime(2025, 6, 30, 23, 59, tzinfo=UTC))
    after = catalog.cost("openai_compatible", "qwen", usage, datetime(2025, 7, 1, tzinfo=UTC))
    assert before.total_usd == Decimal("1.6")
    assert after.total_usd == Decimal("0.8")
    assert before.price_version.endswith("qwen@always")
    assert after.price_version.endswith("qwen@2025-07-01")
    assert catalog.upper_bound(
        "openai_compatible", "qwen", 1_000_000, 1_000_000, datetime(2025, 8, 1, tzinfo=UTC)
    ) == Decimal("0.8")


def test_override_wins_over_the_catalog(overrides_file: Path) -> None:
    usage = Usage(input_tokens=1_000_000)
    assert PriceCatalog(overrides_file).cost("openai", "gpt-4o", usage).input_usd == 2
    assert PriceCatalog().cost("openai", "gpt-4o", usage).price_version.startswith(CATALOG_VERSION)
    # other models of the provider still come from the catalog
    other = PriceCatalog(overrides_file).cost("openai", "gpt-4o-mini", usage)
    assert other.price_version == f"{CATALOG_VERSION}:openai/gpt-4o-mini"


def test_json_overrides(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "provider": "anthropic",
                        "model": "claude-private",
                        "input_mtok": "3",
                        "output_mtok": "15",
                    }
                ]
            }
        )
    )
    cost = PriceCatalog(path).cost(
        "anthropic", "claude-private", Usage(input_tokens=1_000, output_tokens=100)
    )
    assert cost.total_usd == Decimal("0.0045")


def test_the_shipped_example_is_valid() -> None:
    overrides = load_overrides(EXAMPLE_PATH)
    catalog = PriceCatalog(EXAMPLE_PATH)
    for entry in overrides.entries:
        assert catalog.upper_bound(entry.provider, entry.model, 1_000, 1_000) > 0


@pytest.mark.parametrize(
    ("content", "field", "says"),
    [
        (
            "models:\n  - provider: local\n    model: m\n    input_mtk: '1'\n    output_mtok: '1'\n",
            "models.0.input_mtk",
            "Extra inputs are not permitted",
        ),
        (
            "models:\n  - provider: openai_compatible\n    model: m\n    input_mtok: '1'\n",
            "models.0.output_mtok",
            "Field required",
        ),
        (
            "models:\n  - provider: p\n    model: m\n    input_mtok: '-1'\n    output_mtok: '1'\n",
            "models.0.input_mtok",
            "greater than or equal to 0",
        ),
        (
            "models:\n  - provider: p\n    model: m\n    input_mtok: cheap\n    output_mtok: '1'\n",
            "models.0.input_mtok",
            "decimal",
        ),
        (
            "models:\n  - provider: p\n    model: m\n    input_mtok: .nan\n    output_mtok: '1'\n",
            "models.0.input_mtok",
            "finite",
        ),
        (
            "models:\n  - {provider: p, model: m, input_mtok: 1, output_mtok: 1, effective_from: someday}\n",
            "models.0.effective_from",
            "date",
        ),
        (
            "models:\n  - {provider: p, model: M, input_mtok: 1, output_mtok: 1}\n"
            "  - {provider: p, model: m, input_mtok: 2, output_mtok: 2}\n",
            "(top level)",
            "two prices",
        ),
        ("", "(top level)", "valid dictionary"),
        ("prices: []\n", "models", "Field required"),
    ],
    ids=["typo", "missing", "negative", "not-a-number", "nan", "bad-date", "duplicate", "empty", "no-models"],
)
def test_bad_file_names_file_and_field(tmp_path: Path, content: str, field: str, says: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        PriceCatalog(path)
    message = str(caught.value)
    assert str(path) in message and field in message and says in message, message
    assert caught.value.field in message
    assert "WFLO_PRICE_OVERRIDES_PATH" in message


def test_unreadable_or_unparsable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        PriceCatalog(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        PriceCatalog(broken)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text("{'models': }")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        PriceCatalog(broken_json)
