"""Gateway overhead per LLM call vs calling the OpenAI SDK directly against the same local server.

Both sides send the same chat completion through the real SDK over HTTP to one fast loopback server
(``bench/fast_server.py``: it answers in well under 0.5 ms, so the SDK's own cost is the baseline and the
difference is wflo's; the tests' server would add ~45 ms to both sides). The gateway side adds what wflo does
per call on its production backends: budget hold + settlement on Postgres, ledger row, outbox event, breaker
on Redis. Requests use temperature 0.7 so nothing is served from the cache. A third side shows the floor of
any gateway that holds before sending and settles after, on a Postgres ledger: the SDK call between two raw
psycopg autocommit INSERTs (one round trip each, no wflo code). Rounds alternate so machine noise hits all.

    .venv/bin/python bench/bench_gateway.py [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openai  # noqa: E402
import psycopg  # noqa: E402

from bench.fast_server import fast_server  # noqa: E402
from bench.result import result  # noqa: E402
from tests.services import start_postgres, start_redis  # noqa: E402
from wflo_core.budgets import CallScope  # noqa: E402
from wflo_core.calls import LLMRequest, Message  # noqa: E402
from wflo_core.config import load_settings  # noqa: E402
from wflo_core.ledger.migrations import upgrade  # noqa: E402
from wflo_core.services import build_services  # noqa: E402

ROUNDS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per side in total")
    args = parser.parse_args()
    per_round = max(1, args.calls // ROUNDS)
    pg, rd = start_postgres(), start_redis()
    try:
        with fast_server() as base_url:
            run(pg.url, rd.url, base_url, per_round)
    finally:
        pg.stop()
        rd.stop()


def run(database_url: str, redis_url: str, base_url: str, per_round: int) -> None:
    settings = load_settings(database_url=database_url, redis_url=redis_url, llm_mode="live",
                             openai_api_key="sk-bench", openai_base_url=base_url)
    upgrade(settings.ledger_url)
    services = build_services(settings)
    with services.ledger.transaction() as s:
        services.budgets.set_limit(s, "run", "bench", Decimal("1000"))
    sdk = openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    scope = CallScope(run_id="bench", workflow="bench", step_key="step")
    counter = iter(range(10**9))

    def direct() -> None:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                    max_completion_tokens=50, temperature=0.7)

    raw = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    raw.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")

    def floor() -> None:
        raw.execute("INSERT INTO bench_floor DEFAULT VALUES")
        direct()
        raw.execute("INSERT INTO bench_floor DEFAULT VALUES")

    def gateway() -> None:
        request = LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", "hi"),),
                             max_tokens=50, temperature=0.7)
        services.gateway.complete(request, scope, f"bench:{next(counter)}")

    direct(), floor(), gateway()  # warm up connections and caches
    sides: dict[str, list[float]] = {"direct": [], "floor": [], "gateway": []}
    for _ in range(ROUNDS):
        for name, fn in (("direct", direct), ("floor", floor), ("gateway", gateway)):
            started = time.perf_counter()
            for _ in range(per_round):
                fn()
            sides[name].append((time.perf_counter() - started) / per_round * 1000)
    d, f, g = (statistics.median(sides[name]) for name in ("direct", "floor", "gateway"))
    print(f"direct SDK call: {d:.2f} ms/call (median of {ROUNDS} rounds x {per_round})")
    print(f"SDK call between two raw Postgres INSERTs: {f:.2f} ms/call (+{f - d:.2f})")
    print(f"through gateway: {g:.2f} ms/call")
    print(f"gateway overhead: {g - d:.2f} ms/call, ratio {g / d:.2f}x; over the two-round-trip floor: {g - f:.2f} ms")
    result("gateway per call (Postgres + Redis, cache off)", f"{g:.2f} ms", f"{d:.2f} ms SDK direct",
           g / d, "adds <= 1 ms", g - d <= 1.0)
    result("gateway per call vs its floor (SDK + 2 raw Postgres round trips)", f"{g:.2f} ms",
           f"{f:.2f} ms floor", g / f, "reported: what wflo adds beyond the two round trips", True)
    raw.close()
    services.close()


if __name__ == "__main__":
    main()
