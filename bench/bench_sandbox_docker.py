"""Start-to-exit latency of ``print(1)`` in the Docker sandbox, cold and from the warm pool.

Sides, interleaved round by round so machine noise hits them alike:
  docker run   the baseline: `docker run --rm -i` of the same image with the same hardening
               (no network, read-only root, tmpfs work dir, nobody, no capabilities, limits)
  cold         DockerSandbox.run("print(1)"): create + attach + start a container, send the job,
               read the output, usage and files back (no pool)
  warm pool    the same with a pool of 1 (refilled before each round, as between real runs): the
               runner in the pooled container already waits on its stdin
  bare python  `python3 -c 'print(1)'` on the host, for scale
Goals: cold <= 1.0x `docker run`; warm pool p50 <= 50 ms (E2B claims ~150 ms per sandbox start).
Uses the test harness's dockerd and builds the sandbox image if it is missing.

    .venv/bin/python bench/bench_sandbox_docker.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.result import result  # noqa: E402
from tests.services import start_dockerd  # noqa: E402
from wflo_core.sandbox.docker import DockerSandbox  # noqa: E402
from wflo_core.sandbox.docker_labels import OWNER_LABEL  # noqa: E402
from wflo_core.sandbox.policy import SandboxLimits  # noqa: E402

IMAGE = "wflo-sandbox:latest"
POOL_GOAL_MS = 50.0
E2B_CLAIM_MS = 150.0


def docker_run_argv(limits: SandboxLimits) -> list[str]:
    """The hardened `docker run` a careful user would write for the same container."""
    cpu = limits.effective_cpu_seconds
    return [
        "docker", "run", "--rm", "-i", "--network", "none", "--ipc", "none", "--read-only",
        "--tmpfs", f"/work:rw,nosuid,nodev,size={limits.workdir_bytes},uid=65534,gid=65534",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "65534:65534",
        "--workdir", "/work", "--hostname", "sandbox", "--pids-limit", str(limits.pids),
        "--memory", str(limits.memory_bytes), "--memory-swap", str(limits.memory_bytes),
        "--cpus", str(limits.cpus), "--ulimit", f"cpu={cpu}:{cpu + 1}", "--ulimit", "core=0",
        "--ulimit", "nofile=256:256", IMAGE, "python3", "-c", "print(1)",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("WFLO_TEST_KEEP_DOCKERD", "1")
    host = start_dockerd().url
    env = {**os.environ, "DOCKER_HOST": host}
    subprocess.run([str(ROOT / "scripts" / "build_sandbox_image.sh"), IMAGE], check=True, env=env, capture_output=True)
    cold = DockerSandbox(image=IMAGE, docker_host=host)
    pooled = DockerSandbox(image=IMAGE, docker_host=host, warm_pool_size=1)
    argv = docker_run_argv(cold.default_limits)

    def docker_run() -> None:
        out = subprocess.run(argv, env=env, capture_output=True, check=True, stdin=subprocess.DEVNULL)
        assert out.stdout == b"1\n", out

    def bare() -> None:
        assert subprocess.run(["/usr/bin/python3", "-c", "print(1)"], capture_output=True).stdout == b"1\n"

    def on(sandbox: DockerSandbox) -> Callable[[], None]:
        def run() -> None:
            result = sandbox.run("print(1)", timeout=30)
            assert result.ok and result.stdout == b"1\n", result

        return run

    sides = {"docker run": docker_run, "cold": on(cold), "warm pool": on(pooled), "bare python": bare}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for run in sides.values():  # warm-up: page cache, first container, imports
            run()
        for _ in range(args.rounds):
            for name, run in sides.items():
                started = time.perf_counter()
                run()
                samples[name].append(time.perf_counter() - started)
                # untimed: let the pool refill and used containers go, so no side runs during another
                _settle(cold, pooled)
    finally:
        cold.close()
        pooled.close()

    medians = {name: statistics.median(xs) * 1000 for name, xs in samples.items()}
    print(f"print(1) start to exit, {args.rounds} interleaved rounds")
    print(f"{'side':<13}{'p50 ms':>9}{'p90 ms':>9}{'min ms':>9}")
    for name, xs in samples.items():
        p90 = statistics.quantiles(xs, n=10)[-1] * 1000
        print(f"{name:<13}{medians[name]:>9.1f}{p90:>9.1f}{min(xs) * 1000:>9.1f}")
    ratio = medians["cold"] / medians["docker run"]
    pool = medians["warm pool"]
    print(f"warm pool p50 = {pool / medians['bare python']:.2f}x bare python, {pool / E2B_CLAIM_MS:.2f}x E2B's claim")
    result(
        "Docker sandbox print(1), cold",
        f"{medians['cold']:.0f} ms",
        f"hardened docker run {medians['docker run']:.0f} ms",
        ratio,
        "<= 1.0x docker run",
        ratio <= 1.0,
    )
    result(
        "Docker sandbox print(1), warm pool p50",
        f"{pool:.1f} ms",
        f"bare python {medians['bare python']:.1f} ms",
        pool / medians["bare python"],
        f"<= {POOL_GOAL_MS:.0f} ms",
        pool <= POOL_GOAL_MS,
    )


def _settle(cold: DockerSandbox, pooled: DockerSandbox) -> None:
    """Wait until the pool is full again and only its idle containers exist."""
    pool = pooled.pool
    assert pool is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = {"label": f"{OWNER_LABEL}={socket.gethostname()}:{os.getpid()}"}
        running = cold.client.containers.list(all=True, filters=mine, ignore_removed=True)
        if pool.idle_count() == pool.size and len(running) <= pool.size:
            return
        time.sleep(0.02)


if __name__ == "__main__":
    main()
