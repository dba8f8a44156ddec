"""Start-to-exit latency of ``print(1)`` in the process sandbox vs a bare ``python3 -c 'print(1)'``.

Both sides run interleaved round by round, so machine noise hits them alike:
  bare       subprocess.run(["/usr/bin/python3", "-c", "print(1)"])   (the baseline)
  process    ProcessSandbox.run("print(1)")   bubblewrap namespaces, per-run uid, tmpfs and cgroups
             (as root; rlimits only otherwise), output captured, files collected.
Prints both medians and p90s and the ratio of the medians. Goal: <= 1.5x bare python.

    .venv/bin/python bench/bench_sandbox_process.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.services import apt_install  # noqa: E402
from wflo_core.sandbox.process import ProcessSandbox  # noqa: E402

GOAL = 1.5


def bare() -> None:
    out = subprocess.run(["/usr/bin/python3", "-c", "print(1)"], capture_output=True, check=True)
    assert out.stdout == b"1\n"


def timed(sides: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    for run in sides.values():  # warm-up: imports, page cache
        run()
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        apt_install("bubblewrap")
    with ProcessSandbox() as sandbox:

        def sandboxed() -> None:
            result = sandbox.run("print(1)", timeout=30)
            assert result.ok and result.stdout == b"1\n", result

        samples = timed({"bare python": bare, "process sandbox": sandboxed}, args.rounds)
        mode = "root: uid + tmpfs + cgroups" if sandbox.use_cgroups else "unprivileged: rlimits only"
    base = statistics.median(samples["bare python"])
    print(f"print(1) start to exit, {args.rounds} interleaved rounds ({mode})")
    print(f"{'side':<17}{'median ms':>10}{'p90 ms':>9}{'x bare':>9}")
    for name, xs in samples.items():
        median = statistics.median(xs)
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"{name:<17}{median * 1000:>10.1f}{p90 * 1000:>9.1f}{median / base:>9.2f}")
    ratio = statistics.median(samples["process sandbox"]) / base
    print(f"process sandbox / bare python = {ratio:.2f}x (goal <= {GOAL}x): {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
