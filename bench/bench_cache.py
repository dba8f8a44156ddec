"""Cache-hit latency: RedisCache.get (GET + decode to LLMResponse) vs a raw redis-py GET of the same bytes.

Starts its own redis-server on a free loopback port, stores one realistic response, then times both
reads in alternating rounds on one connection so that machine noise hits both sides alike.
Prints per-read medians and the ratio (goal: <= 1.5x).

    .venv/bin/python bench/bench_cache.py [--reads 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench.result import result  # noqa: E402
from tests.services import start_redis  # noqa: E402
from wflo_core.cache.codec import encode_response  # noqa: E402
from wflo_core.cache.keys import cache_key  # noqa: E402
from wflo_core.cache.redis import RedisCache  # noqa: E402
from wflo_core.calls import LLMRequest, LLMResponse, Message, ToolCall  # noqa: E402
from wflo_core.pricing.usage import Usage  # noqa: E402

GOAL = 1.5
ROUNDS = 20


def sample_response() -> LLMResponse:
    """A typical chat answer: ~1.5 KB of text, one tool call, usage and the provider's raw JSON."""
    text = "The quarterly report shows revenue growth driven by the new subscription tier. " * 20
    return LLMResponse(
        provider="openai", model="gpt-4o-mini-2024-07-18", text=text,
        usage=Usage(input_tokens=812, output_tokens=344, cached_input_tokens=512, reasoning_tokens=0),
        tool_calls=(ToolCall("call_1", "lookup", '{"ticker": "ACME", "quarter": "Q2"}'),),
        finish_reason="stop", response_id="chatcmpl-123",
        raw={"id": "chatcmpl-123", "object": "chat.completion", "created": 1718000000,
             "system_fingerprint": "fp_abc", "usage": {"prompt_tokens": 812, "completion_tokens": 344}},
    )


def time_reads(read, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        read()
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20_000, help="reads per side in total")
    args = parser.parse_args()

    service = start_redis()
    try:
        client = redis.Redis.from_url(service.url)
        cache = RedisCache(client, namespace="bench:")
        request = LLMRequest(provider="openai", model="gpt-4o-mini",
                             messages=(Message("user", "Summarize the quarterly report."),), temperature=0)
        key = cache_key(request)
        response = sample_response()
        cache.put(key, response)
        raw_key = "bench:" + key
        assert client.get(raw_key) == encode_response(response)
        assert cache.get(key) == response

        per_round = max(1, args.reads // ROUNDS)
        time_reads(lambda: client.get(raw_key), 500)  # warm up both paths
        time_reads(lambda: cache.get(key), 500)
        raw_times, cache_times = [], []
        for _ in range(ROUNDS):
            raw_times.append(time_reads(lambda: client.get(raw_key), per_round))
            cache_times.append(time_reads(lambda: cache.get(key), per_round))

        raw_us = statistics.median(raw_times) * 1e6
        cache_us = statistics.median(cache_times) * 1e6
        ratio = cache_us / raw_us
        payload = len(encode_response(response))
        print(f"payload: {payload} bytes, {per_round * ROUNDS} reads per side in {ROUNDS} alternating rounds")
        print(f"raw redis-py GET               : {raw_us:8.1f} us/read (median of rounds)")
        print(f"RedisCache.get -> LLMResponse  : {cache_us:8.1f} us/read (median of rounds)")
        print(f"ratio: {ratio:.2f}x (goal <= {GOAL}x) -> {'OK' if ratio <= GOAL else 'OVER GOAL'}")
        result("cache hit, RedisCache.get to an LLMResponse", f"{cache_us:.1f} us", f"raw redis-py GET {raw_us:.1f} us",
               ratio, f"<= {GOAL}x raw", ratio <= GOAL)
        client.close()
    finally:
        service.stop()


if __name__ == "__main__":
    main()
