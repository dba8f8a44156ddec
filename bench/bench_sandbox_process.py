"""Start-to-exit latency of ``print(1)`` in the process sandbox vs a bare ``python3 -c 'print(1)'``.

The sides run interleaved round by round, in a shuffled order, so machine noise hits them alike:
  bare python    subprocess.run(["/usr/bin/python3", "-c", "print(1)"])   (the baseline)
  default        ProcessSandbox().run("print(1)"), what users get: two sandboxes (fresh uid, tmpfs,
                 cgroups as root, namespaces, mounts, a shell waiting inside) are kept set up
                 ahead, so the run writes its files, limits and launch script and says "go".
                 Before each round (untimed) the sandboxes are given time to get ready, as
                 between real runs; their setup is timed separately and printed as "setup, moved".
  back-to-back   the same sandbox, a burst of BURST runs, each started the moment the previous one
                 returned (the worst case for the default: replacements are set up meanwhile);
                 the sample is the burst's time per run
  cold           ProcessSandbox(warm_pool_size=0): everything set up on the run's path
                 (reported: the setup that the default moves off the run's path)
Prints medians and p90s and the ratio of each median to bare python's. Goal: <= 1.5x bare python.

    .venv/bin/python bench/bench_sandbox_process.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.result import result  # noqa: E402
from tests.services import ensure_command  # noqa: E402
from wflo_core.sandbox.policy import SandboxLimits  # noqa: E402
from wflo_core.sandbox.process import ProcessSandbox, _Slot  # noqa: E402

GOAL = 1.5
BURST = 8


def bare() -> None:
    out = subprocess.run(["/usr/bin/python3", "-c", "print(1)"], capture_output=True, check=True)
    assert out.stdout == b"1\n"


def on(sandbox: ProcessSandbox) -> Callable[[], None]:
    def run() -> None:
        done = sandbox.run("print(1)", timeout=30)
        assert done.ok and done.stdout == b"1\n", done

    return run


def took(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def settled(*sandboxes: ProcessSandbox) -> None:
    """Untimed: the next sandbox is set up, earlier ones are removed, and the kernel has had a
    moment for its asynchronous teardown of their namespaces (as between real runs)."""
    for sandbox in sandboxes:
        deadline = time.monotonic() + 10
        while sandbox.warm_pool_size and sandbox.prepared_run is None and time.monotonic() < deadline:
            time.sleep(0.001)
        sandbox._worker.submit(lambda: None).result()  # the whole pool is set up, used ones removed
    time.sleep(0.05)


def timed_setups(sandbox: ProcessSandbox) -> list[float]:
    """Wrap the sandbox's setup so each one's duration (in the background thread) is recorded."""
    durations: list[float] = []
    setup = sandbox._open_slot

    def recorded(limits: SandboxLimits) -> _Slot:
        started = time.perf_counter()
        try:
            return setup(limits)
        finally:
            durations.append(time.perf_counter() - started)

    sandbox._open_slot = recorded  # type: ignore[method-assign]
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    ensure_command("bwrap", "bubblewrap")
    shuffle = random.Random(14).shuffle
    default, cold = ProcessSandbox(), ProcessSandbox(warm_pool_size=0)
    try:
        setups = timed_setups(default)
        run_default = on(default)

        def back_to_back() -> float:
            started = time.perf_counter()
            for _ in range(BURST):
                run_default()
            return (time.perf_counter() - started) / BURST

        sides: dict[str, Callable[[], float]] = {
            "bare python": lambda: took(bare),
            "default": lambda: took(run_default),
            "back-to-back": back_to_back,
            "cold": lambda: took(on(cold)),
        }
        for side in sides.values():  # warm-up: imports, page cache
            side()
        setups.clear()
        samples: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for _ in range(args.rounds):
            shuffle(order)  # no side always follows the same one
            for name in order:
                settled(default, cold)
                samples[name].append(sides[name]())
        mode = "root: uid + tmpfs + cgroups" if cold.use_cgroups else "unprivileged: rlimits only"
        served = default.warm_runs
    finally:
        default.close()
        cold.close()
    base = statistics.median(samples["bare python"])
    print(f"print(1) start to exit, {args.rounds} interleaved rounds ({mode})")
    print(f"{'side':<15}{'median ms':>10}{'p90 ms':>9}{'x bare':>9}")
    for name, xs in samples.items():
        median = statistics.median(xs)
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"{name:<15}{median * 1000:>10.1f}{p90 * 1000:>9.1f}{median / base:>9.2f}")
    print(
        f"setup, moved off the default run's path: median {statistics.median(setups) * 1000:.1f} ms per "
        f"sandbox ({len(setups)} set up in the background; {served} runs served by a sandbox set up ahead)"
    )
    for name, path in (
        ("default", "process sandbox print(1), default (two set up ahead)"),
        ("back-to-back", f"process sandbox print(1), bursts of {BURST} back-to-back runs"),
        ("cold", "process sandbox print(1), cold (warm_pool_size=0)"),
    ):
        median = statistics.median(samples[name])
        ratio = median / base
        goal, met = (("reported: the setup the default moves off the run's path", True) if name == "cold"
                     else (f"<= {GOAL}x", ratio <= GOAL))
        result(path, f"{median * 1000:.1f} ms", f"bare python {base * 1000:.1f} ms", ratio, goal, met)


if __name__ == "__main__":
    main()
