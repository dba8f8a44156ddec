"""Gateway overhead through the drop-in SDK client vs the same SDK calling the same server directly.

Both sides are a real ``openai.OpenAI`` making the same chat completion over real HTTP to one loopback server.
The drop-in side's httpx transport hands each request to the gateway: cache lookup, budget hold, send behind
the breaker, settlement, ledger row and outbox event, on the embedded default (SQLite ledger and cache under a
temporary WFLO_HOME) and, with ``--postgres``, on a Postgres ledger started for the run.

Why a fast server: the tests' server (tests/llm_server.py) makes the SDK wait about 45 ms per request, which
would bury a few milliseconds of overhead in noise; ``bench/fast_server.py`` answers in well under 0.5 ms, so
the baseline is the SDK's own cost and the difference is wflo's. Requests carry no temperature, so none is
served from the cache; the "cache hit" path repeats one temperature=0 request. Rounds alternate so machine
noise hits both.

    .venv/bin/python bench/bench_dropin.py [--calls 300] [--postgres]

Prints one RESULT line per path (``bench/result.py``; milliseconds per call).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openai  # noqa: E402

from bench.fast_server import fast_server  # noqa: E402
from bench.result import result  # noqa: E402
from wflo_core.budgets import CallScope  # noqa: E402
from wflo_core.config import load_settings  # noqa: E402
from wflo_core.ledger.migrations import upgrade  # noqa: E402
from wflo_core.llm.dropin import DropinClients  # noqa: E402
from wflo_core.services import build_services  # noqa: E402

ROUNDS = 10
GOAL_MS = 5.0
"""Overhead per call we aim to stay under (LiteLLM's proxy reports a median of 2-12 ms)."""
def _measure(sides: dict[str, callable], per_round: int) -> dict[str, float]:
    for fn in sides.values():
        fn()  # warm up connections, caches and the price catalog
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, fn in sides.items():
            started = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append((time.perf_counter() - started) / per_round * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per side in total")
    parser.add_argument("--postgres", action="store_true", help="also measure on a Postgres ledger")
    args = parser.parse_args()
    per_round = max(1, args.calls // ROUNDS)
    server = fast_server()
    base_url = server.__enter__()
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    postgres = None
    if args.postgres:
        from tests.services import start_postgres

        postgres = start_postgres()
        backends.append(("postgres", postgres.url))
    try:
        direct = openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        for backend, database_url in backends:
            with tempfile.TemporaryDirectory() as home:
                settings = load_settings(home=Path(home), database_url=database_url, llm_mode="live",
                                         openai_api_key="sk-bench")
                upgrade(settings.ledger_url)
                services = build_services(settings)
                scope = CallScope(run_id=f"bench-{backend}", workflow="bench", step_key="step")
                with services.ledger.transaction() as s:
                    services.ledger.ensure_run(s, scope.run_id, scope.workflow)
                    services.budgets.set_limit(s, "run", scope.run_id, Decimal("1000"))
                clients = DropinClients(services.gateway, services.settings)
                dropin = clients.openai(scope, api_key="sk-bench", base_url=base_url)

                def call(client: openai.OpenAI, **params: object) -> callable:
                    return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                                  max_tokens=50, **params)

                timings = _measure({"sdk": call(direct), "wflo": call(dropin),
                                    "wflo_hit": call(dropin, temperature=0)}, per_round)
                b = timings["sdk"]
                for path, key in ((f"chat.completions paid call ({backend} ledger)", "wflo"),
                                  (f"chat.completions cache hit ({backend} ledger)", "wflo_hit")):
                    w = timings[key]
                    result(f"drop-in {path}", f"{w:.2f} ms", f"SDK direct {b:.2f} ms", w / b,
                           f"adds < {GOAL_MS:g} ms", w - b < GOAL_MS)
                clients.close()
                services.close()
    finally:
        server.__exit__(None, None, None)
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
