"""CLI start time: ``wflo --help`` and ``wflo costs`` against ``python -c "import dagster"`` and a bare
``python -c pass``, each a fresh process, interleaved round by round so machine noise hits all alike.

``wflo costs`` runs on an embedded home migrated beforehand (the first command on a new home also
creates the ledger, a one-off). Prints the median wall time of each and the ratios to the Dagster
import. Goals (issue 14, where ``import dagster`` took 1.5 s): ``--help`` <= 0.3 s (0.2x) and
``costs`` <= 1 s (0.67x).

    .venv/bin/python bench/bench_cli.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.result import result  # noqa: E402

WFLO = [sys.executable, "-c", "from wflo_dagster.cli import main; main()"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import dagster": [sys.executable, "-c", "import dagster"],
    "wflo --help": [*WFLO, "--help"],
    "wflo costs": [*WFLO, "costs"],
}


def wall_s(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="wflo-bench-cli-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFLO_")} | {"WFLO_HOME": home}
    subprocess.run([*WFLO, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the OS page cache for every side
        wall_s(argv, env)
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            times[name].append(wall_s(argv, env))
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, value in median.items():
        print(f"{name:<16} median {value * 1000:7.0f} ms  (min {min(times[name]) * 1000:.0f} ms)")
    dagster = median["import dagster"]
    for name, goal_ratio, goal_s in (("wflo --help", 0.2, 0.3), ("wflo costs", 0.67, 1.0)):
        ratio = median[name] / dagster
        result(
            f"CLI start: {name}",
            f"{median[name] * 1000:.0f} ms",
            f"import dagster {dagster * 1000:.0f} ms (python -c pass {median['python -c pass'] * 1000:.0f} ms)",
            ratio,
            f"<= {goal_s:g} s at import dagster 1.5 s (<= {goal_ratio:g}x)",
            ratio <= goal_ratio,
        )


if __name__ == "__main__":
    main()
