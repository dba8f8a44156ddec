"""Start-to-exit latency of ``print(1)`` in the process sandbox vs a bare ``python3 -c 'print(1)'``.

The sides run interleaved round by round, so machine noise hits them alike:
  bare python   subprocess.run(["/usr/bin/python3", "-c", "print(1)"])   (the baseline)
  process       ProcessSandbox.run("print(1)"): a fresh uid, tmpfs and cgroups (as root; rlimits
                only otherwise) and bubblewrap namespaces set up for the run, output captured,
                files collected
  prestarted    ProcessSandbox(prestart=True) (what WFLO_SANDBOX_WARM_POOL > 0 gives): the same
                isolation, set up in the background after the previous run; the run writes its
                files and limits and releases the waiting sandbox. Before each round (untimed) the
                next sandbox is given time to get ready, as between real runs.
Prints medians and p90s and the ratio of each median to bare python's. Goal: <= 1.5x bare python.

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


def timed(
    sides: dict[str, Callable[[], None]], rounds: int, settle: Callable[[], None]
) -> dict[str, list[float]]:
    for run in sides.values():  # warm-up: imports, page cache
        run()
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            settle()
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return samples


def on(sandbox: ProcessSandbox) -> Callable[[], None]:
    def run() -> None:
        result = sandbox.run("print(1)", timeout=30)
        assert result.ok and result.stdout == b"1\n", result

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        apt_install("bubblewrap")
    with ProcessSandbox() as cold, ProcessSandbox(prestart=True) as prestarted:

        def settle() -> None:  # untimed: the next prepared sandbox is ready, earlier runs cleaned up
            deadline = time.monotonic() + 10
            while prestarted.prepared_run is None and time.monotonic() < deadline:
                time.sleep(0.001)
            for sandbox in (cold, prestarted):
                sandbox._worker.submit(lambda: None).result()

        sides = {"bare python": bare, "process": on(cold), "prestarted": on(prestarted)}
        samples = timed(sides, args.rounds, settle)
        mode = "root: uid + tmpfs + cgroups" if cold.use_cgroups else "unprivileged: rlimits only"
    base = statistics.median(samples["bare python"])
    print(f"print(1) start to exit, {args.rounds} interleaved rounds ({mode})")
    print(f"{'side':<13}{'median ms':>10}{'p90 ms':>9}{'x bare':>9}")
    for name, xs in samples.items():
        median = statistics.median(xs)
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"{name:<13}{median * 1000:>10.1f}{p90 * 1000:>9.1f}{median / base:>9.2f}")
    for name in ("process", "prestarted"):
        ratio = statistics.median(samples[name]) / base
        print(f"{name} / bare python = {ratio:.2f}x (goal <= {GOAL}x): {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
