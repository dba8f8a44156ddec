"""Pricing a call: PriceCatalog.cost vs genai-prices' calc_price called directly, with identical results.

First checks the whole genai-prices catalog (every provider's every model, a few usages, two
instants): wflo and ``calc_price`` must agree on every amount, or refuse the same calls. Then builds a
workload of realistic calls (current OpenAI, Anthropic and Google models, with cached,
cache-write and reasoning tokens, long prompts that hit price tiers, timestamps on both sides of price
changes), checks that both give the same three amounts digit for digit (exponent included), then
times both over the same workload in alternating rounds so that machine noise hits both alike.
Both sides are warmed (models resolved, genai-prices' lookup cache filled) and get the same
timestamp; genai-prices' ``Usage`` objects are built before timing, so the baseline pays only for
``calc_price`` itself. Both are timed in thread CPU time (``time.thread_time_ns``): pure computation,
so time spent descheduled on a shared machine is noise, not cost. Prints ns/call of the best round of
each, the median round as well, and the ratio. Goals (issue 14): <= 2 us per call, identical results.
Exits 1 if any result differs.

    .venv/bin/python bench/bench_pricing.py [--calls 2000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genai_prices import Usage as GenaiUsage  # noqa: E402
from genai_prices import calc_price  # noqa: E402
from genai_prices.data import providers as CATALOG  # noqa: E402

from bench.result import result  # noqa: E402
from tests.unit.test_pricing_identity import outcome  # noqa: E402  (the identity test's comparison)
from wflo_core.pricing import PriceCatalog, Usage  # noqa: E402
from wflo_core.pricing.cost import genai_usage  # noqa: E402

GOAL_NS = 2_000
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-5"),
    ("openai", "gpt-5-mini"),
    ("openai", "o3"),
    ("openai", "gpt-5.4"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-6"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    ("google", "gemini-3-pro-preview"),
]
Call = tuple[str, str, Usage, GenaiUsage, datetime]


def workload(calls: int, seed: int = 7) -> list[Call]:
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    result = []
    for _ in range(calls):
        provider, model = rng.choice(MODELS)
        prompt = rng.choice(
            [rng.randint(50, 4_000), rng.randint(4_000, 60_000), rng.randint(150_000, 400_000)]
        )
        cached = rng.choice([0, 0, rng.randint(0, prompt)])
        written = rng.randint(0, prompt - cached) if provider == "anthropic" and rng.random() < 0.3 else 0
        output = rng.randint(1, 8_000)
        reasoning = rng.randint(0, output) if rng.random() < 0.4 else 0
        usage = Usage(
            input_tokens=prompt,
            output_tokens=output,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=reasoning,
        )
        at = start + timedelta(days=rng.randint(0, 700), seconds=rng.randint(0, 86_399))
        result.append((provider, model, usage, genai_usage(usage), at))
    return result


def differences(catalog: PriceCatalog, calls: list[Call]) -> list[str]:
    found = []
    for provider, model, usage, g_usage, at in calls:
        ours = catalog.cost(provider, model, usage, at)
        theirs = calc_price(g_usage, model, provider_id=provider, genai_request_timestamp=at)
        mine = (ours.input_usd.as_tuple(), ours.output_usd.as_tuple(), ours.total_usd.as_tuple())
        base = (theirs.input_price.as_tuple(), theirs.output_price.as_tuple(), theirs.total_price.as_tuple())
        if mine != base:
            found.append(f"{provider}/{model} {usage} at {at}: wflo {ours} != genai-prices {theirs}")
    return found


SWEEP_USAGES = (
    Usage(),
    Usage(input_tokens=1_234, output_tokens=567, cached_input_tokens=1_000, reasoning_tokens=300),
    Usage(input_tokens=272_001, output_tokens=64_000, cached_input_tokens=100_000, cache_write_tokens=50_000,
          reasoning_tokens=60_000),
)
SWEEP_INSTANTS = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2026, 6, 1, 12, tzinfo=UTC))


def _ours(catalog: PriceCatalog, provider: str, model: str, usage: Usage, at: datetime) -> tuple[Decimal, ...]:
    cost = catalog.cost(provider, model, usage, at)
    return cost.input_usd, cost.output_usd, cost.total_usd


def _theirs(provider: str, model: str, usage: Usage, at: datetime) -> tuple[Decimal, ...]:
    calc = calc_price(genai_usage(usage), model, provider_id=provider, genai_request_timestamp=at)
    return calc.input_price, calc.output_price, calc.total_price


def catalog_differences(catalog: PriceCatalog) -> tuple[int, list[str]]:
    """Every model of every provider in the catalog, priced both ways: (comparisons, differences)."""
    compared, found = 0, []
    for provider in CATALOG:
        for model in provider.models:
            for usage in SWEEP_USAGES:
                for at in SWEEP_INSTANTS:
                    compared += 1
                    mine = outcome(partial(_ours, catalog, provider.id, model.id, usage, at))
                    base = outcome(partial(_theirs, provider.id, model.id, usage, at))
                    if mine != base:
                        found.append(f"{provider.id}/{model.id} {usage} at {at}: wflo {mine} != genai-prices {base}")
    return compared, found


def time_baseline(calls: list[Call]) -> float:
    began = time.thread_time_ns()
    for provider, model, _, g_usage, at in calls:
        calc_price(g_usage, model, provider_id=provider, genai_request_timestamp=at)
    return (time.thread_time_ns() - began) / len(calls)


def time_catalog(catalog: PriceCatalog, calls: list[Call]) -> float:
    cost = catalog.cost
    began = time.thread_time_ns()
    for provider, model, usage, _, at in calls:
        cost(provider, model, usage, at)
    return (time.thread_time_ns() - began) / len(calls)


def time_upper_bound(catalog: PriceCatalog, calls: list[Call]) -> float:
    upper_bound = catalog.upper_bound
    began = time.thread_time_ns()
    for provider, model, usage, _, at in calls:
        upper_bound(provider, model, usage.input_tokens, 8_000, at)
    return (time.thread_time_ns() - began) / len(calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    catalog = PriceCatalog()
    compared, mismatches = catalog_differences(catalog)
    models = sum(len(provider.models) for provider in CATALOG)
    print(f"identity: the whole catalog, {models} models of {len(CATALOG)} providers, {compared} prices, "
          f"{len(mismatches)} differences")
    calls = workload(args.calls)
    mismatches += differences(catalog, calls)  # also warms both sides
    print(f"identity: {len(calls)} calls over {len(MODELS)} models, {len(mismatches)} differences")
    for line in mismatches[:10]:
        print("  DIFFERS:", line)
    if mismatches:
        return 1

    baseline, ours, bounds = [], [], []
    for _ in range(args.rounds):
        baseline.append(time_baseline(calls))
        ours.append(time_catalog(catalog, calls))
        bounds.append(time_upper_bound(catalog, calls))
    base_ns, ours_ns = min(baseline), min(ours)
    ratio = base_ns / ours_ns
    print(
        f"genai_prices.calc_price : {base_ns:8.0f} ns/call (median round {statistics.median(baseline):8.0f})"
    )
    print(f"PriceCatalog.cost       : {ours_ns:8.0f} ns/call (median round {statistics.median(ours):8.0f})")
    print(f"PriceCatalog.upper_bound: {min(bounds):8.0f} ns/call (no baseline)")
    print(f"ratio: {ratio:.1f}x faster; median rounds: {statistics.median(baseline) / statistics.median(ours):.1f}x")
    result("pricing one call", f"{ours_ns / 1000:.2f} us", f"genai-prices calc_price {base_ns / 1000:.1f} us",
           ours_ns / base_ns, "<= 2 us, identical results", ours_ns <= GOAL_NS and not mismatches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
