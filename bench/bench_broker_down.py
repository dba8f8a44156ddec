"""A fault must not slow the happy path: the research demo (``wflo demo``) with Postgres and Kafka
configured, the broker up vs the broker stopped, interleaved run by run in one sitting.

Each run is a fresh process with a fresh ``WFLO_HOME`` (so a broker-down run starts with the publish
breaker closed and pays for discovering the outage), against one Postgres ledger and one broker this
script starts (tests/services.py); the sandbox step uses the process backend. After the broker-down
runs, the broker is started again and ``wflo events relay`` must publish every event the down runs
left in the outbox. Goal (issue 14):
broker-down <= 1.1x broker-up (it was 45.7 s vs 12 s when each step's relay waited for the broker).

    .venv/bin/python bench/bench_broker_down.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.result import result  # noqa: E402
from tests.services import KafkaBroker, ensure_command, free_port, start_postgres  # noqa: E402

WFLO = [sys.executable, "-c", "from wflo_dagster.cli import main; main()"]


def wflo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WFLO, *args], env=env, capture_output=True, text=True)


def demo_s(env: dict[str, str]) -> float:
    home = tempfile.mkdtemp(prefix="wflo-bench-down-")
    started = time.perf_counter()
    done = wflo(env | {"WFLO_HOME": home}, "demo")
    elapsed = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"wflo demo failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_command("bwrap", "bubblewrap")  # the demo's agent code runs in the process sandbox
    broker = KafkaBroker(free_port(), Path(tempfile.mkdtemp(prefix="wflo-bench-kafka-")))
    broker.start()
    postgres = start_postgres()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFLO_", "DAGSTER_"))} | {
        "WFLO_DATABASE_URL": postgres.url, "WFLO_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "WFLO_HOME": tempfile.mkdtemp(prefix="wflo-bench-down-"),
        "WFLO_SANDBOX_BACKEND": "process",  # the sandbox is not what this bench is about
    }
    try:
        for step in (("db", "upgrade"), ("events", "topics")):
            done = wflo(env, *step)
            assert done.returncode == 0, done.stderr
        demo_s(env)  # warm caches (imports, cassette) outside the measured runs
        up, down = [], []
        for _ in range(args.rounds):
            up.append(demo_s(env))
            broker.stop()
            down.append(demo_s(env))
            broker.start()
        relayed = wflo(env, "events", "relay")
        print(f"broker up  : {', '.join(f'{t:.1f} s' for t in up)}")
        print(f"broker down: {', '.join(f'{t:.1f} s' for t in down)}")
        print(f"after the broker came back, wflo events relay: {relayed.stdout.strip()}")
        assert relayed.returncode == 0 and "still pending 0" in relayed.stdout, relayed.stdout + relayed.stderr
        up_s, down_s = statistics.median(up), statistics.median(down)
        result("research demo with the Kafka broker down", f"{down_s:.1f} s", f"broker up {up_s:.1f} s",
               down_s / up_s, "<= 1.1x broker up, nothing lost", down_s / up_s <= 1.1)
    finally:
        postgres.stop()
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
