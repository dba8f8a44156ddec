"""Start-to-exit latency of ``print(1)`` per sandbox backend vs a bare ``python3 -c 'print(1)'``.

Measures, interleaved round by round so machine noise hits every side alike:
  bare       subprocess.run(["/usr/bin/python3", "-c", "print(1)"])  (the baseline)
  process    ProcessSandbox.run("print(1)")          bubblewrap + cgroups + per-run uid and tmpfs
  docker     DockerSandbox.run("print(1)")           a fresh container per run
  docker+pool  the same with a warm pool of 2        the container was started ahead of time
Prints per-run medians and each ratio against the baseline. Uses the test harness's dockerd and
builds the sandbox image if missing (both as the test suite does).

    .venv/bin/python bench/bench_sandbox.py [--rounds 20] [--no-docker]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services import apt_install, start_dockerd  # noqa: E402
from wflo_core.sandbox import Sandbox  # noqa: E402
from wflo_core.sandbox.docker import DockerSandbox  # noqa: E402
from wflo_core.sandbox.process import ProcessSandbox  # noqa: E402

IMAGE = "wflo-sandbox:latest"


def bare() -> None:
    out = subprocess.run(["/usr/bin/python3", "-c", "print(1)"], capture_output=True, check=True)
    assert out.stdout == b"1\n"


def sandboxed(sandbox: Sandbox) -> Callable[[], None]:
    def run() -> None:
        result = sandbox.run("print(1)", timeout=30)
        assert result.ok and result.stdout == b"1\n", result

    return run


def open_docker(warm_pool_size: int) -> DockerSandbox:
    host = start_dockerd().url
    subprocess.run(
        [str(ROOT / "scripts" / "build_sandbox_image.sh"), IMAGE],
        check=True,
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
    )
    return DockerSandbox(image=IMAGE, docker_host=host, warm_pool_size=warm_pool_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-docker", action="store_true", help="only the process backend")
    args = parser.parse_args()
    os.environ.setdefault("WFLO_TEST_KEEP_DOCKERD", "1")
    if subprocess.run(["which", "bwrap"], capture_output=True).returncode != 0:
        apt_install("bubblewrap")

    sandboxes: dict[str, Sandbox] = {"process": ProcessSandbox()}
    if not args.no_docker:
        sandboxes["docker"] = open_docker(0)
        sandboxes["docker+pool"] = open_docker(2)
    sides: dict[str, Callable[[], None]] = {"bare": bare, **{k: sandboxed(v) for k, v in sandboxes.items()}}
    try:
        for run in sides.values():  # warm-up: imports, page cache, first container
            run()
        timings: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, run in sides.items():
                if name == "docker+pool":  # let the pool refill, as it would between real runs
                    pool = sandboxes[name].pool  # type: ignore[attr-defined]
                    deadline = time.monotonic() + 10
                    while pool.idle_count() < pool.size and time.monotonic() < deadline:
                        time.sleep(0.01)
                started = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - started)
    finally:
        for sandbox in sandboxes.values():
            sandbox.close()

    baseline = statistics.median(timings["bare"])
    print(f"print(1) start-to-exit, median of {args.rounds} interleaved rounds")
    print(f"{'side':<13}{'median ms':>10}{'p90 ms':>9}{'x bare':>9}")
    for name, samples in timings.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else median
        print(f"{name:<13}{median * 1000:>10.1f}{p90 * 1000:>9.1f}{median / baseline:>9.2f}")


if __name__ == "__main__":
    main()
