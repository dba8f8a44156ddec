"""The catalog cache: prices read back from it are genai-prices' to the digit, and a process whose models
are all cached never imports genai-prices; a damaged or unwritable cache is priced around, not trusted."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from genai_prices import types as genai

from tests.unit.test_pricing_identity import INSTANTS, MODELS, USAGES, assert_identical
from wflo_core.errors import ModelNotPriced, PricingError
from wflo_core.pricing import PriceCatalog
from wflo_core.pricing.cost import StartDate


def cached_models(directory: Path) -> set[tuple[str, str]]:
    return {(entry["provider"], entry["model"]) for entry in map(json.loads, map(Path.read_text,
                                                                                  directory.glob("prices-*/*.json")))}


def cache_file(directory: Path) -> Path:
    (path,) = directory.glob("prices-*/*.json")
    return path


def test_every_model_read_back_from_the_cache_prices_as_genai_prices_does(tmp_path: Path) -> None:
    writer = PriceCatalog(cache_dir=tmp_path)
    for provider, model in MODELS:
        with contextlib.suppress(ModelNotPriced, PricingError):  # ids genai-prices itself does not match
            writer.resolve(provider, model)
    cached = cached_models(tmp_path)
    assert len(cached) > 0.9 * len(MODELS)  # all but those and the time-of-day prices

    reader = PriceCatalog(cache_dir=tmp_path)
    for provider, model in MODELS:
        if (provider, model) not in cached:
            continue
        assert reader.resolve(provider, model).points == writer.resolve(provider, model).points
        for usage in USAGES:
            for at in INSTANTS:
                assert_identical(reader, provider, model, usage, at)
    assert reader._genai is None, "a cached model was looked up in genai-prices"


def test_a_time_of_day_price_is_never_cached(tmp_path: Path) -> None:
    catalog = PriceCatalog(cache_dir=tmp_path)
    points = catalog.resolve("deepseek", "deepseek-chat").points
    assert any(not isinstance(point.constraint, StartDate | None) for point in points)
    catalog.resolve("openai", "gpt-4o")
    assert cached_models(tmp_path) == {("openai", "gpt-4o")}


def test_a_process_with_the_models_cached_never_imports_genai_prices(tmp_path: Path) -> None:
    script = (
        "import sys; from wflo_core.config import load_settings; from wflo_core.pricing import PriceCatalog, Usage\n"
        "c = PriceCatalog.from_settings(load_settings())\n"
        "for p, m in [('openai', 'gpt-4o-mini'), ('anthropic', 'claude-3-5-haiku-latest')]:\n"
        "    print(repr(c.cost(p, m, Usage(input_tokens=1234, output_tokens=56, cached_input_tokens=1000))))\n"
        "print('genai_prices' in sys.modules, 'httpx2' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFLO_")} | {
        "XDG_CACHE_HOME": str(tmp_path), "WFLO_HOME": str(tmp_path / "home"),
    }

    def run() -> list[str]:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        return done.stdout.splitlines()

    first, second = run(), run()
    assert first[-1] == "True True"
    assert second[-1] == "False False"
    assert second[:-1] == first[:-1]
    assert all("price_version='genai-prices==" in line for line in first[:-1])


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # cut short
    lambda text: "[1, 2]",
    lambda text: text.replace('"gpt-4o-mini"', '"gpt-4o"'),  # another model's file
    lambda text: text.replace('"0.15"', '"-1"').replace('"0.6"', '"NaN"'),  # tampered prices
    lambda text: text.replace('"version"', '"versio"'),
])
def test_a_damaged_cache_is_priced_around(tmp_path: Path, damage: object) -> None:
    writer = PriceCatalog(cache_dir=tmp_path)
    fresh = writer.resolve("openai", "gpt-4o-mini").points
    path = cache_file(tmp_path)
    original = path.read_text()
    damaged = damage(original)  # type: ignore[operator]
    assert damaged != original
    path.write_text(damaged)
    reader = PriceCatalog(cache_dir=tmp_path)
    assert reader.resolve("openai", "gpt-4o-mini").points == fresh
    for usage in USAGES:
        assert_identical(reader, "openai", "gpt-4o-mini", usage, INSTANTS[-1])


def test_an_unwritable_cache_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "wflo").write_text("not a directory")
    catalog = PriceCatalog(cache_dir=tmp_path / "wflo")
    for usage in USAGES:
        assert_identical(catalog, "openai", "gpt-4o", usage, INSTANTS[0])


@pytest.mark.parametrize("at", [
    *INSTANTS,
    datetime(2025, 6, 9, 22, 0, tzinfo=timezone(timedelta(hours=-3))),  # the 10th in UTC
    datetime(2025, 6, 10, 0, 30, tzinfo=timezone(timedelta(hours=2))),  # still the 9th in UTC
    datetime(2025, 6, 10),
])
def test_a_start_date_is_active_exactly_when_genai_prices_says(at: datetime) -> None:
    start = date(2025, 6, 10)
    assert StartDate(start).active(at) == genai.StartDateConstraint(start).active(at)
    assert StartDate(start).active(at.replace(tzinfo=UTC)) == genai.StartDateConstraint(start).active(
        at.replace(tzinfo=UTC))
