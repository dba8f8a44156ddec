"""Compensations run newest first, exactly once, also when the rollback process is SIGKILLed mid-way and
``wflo runs rollback`` is invoked again (real CLI processes, ledger on Postgres)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.services import scratch_database
from wflo_core.compensation import CompensationBook
from wflo_core.ledger.migrations import upgrade
from wflo_core.ledger.models import Compensation, Run
from wflo_core.ledger.store import Ledger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WFLO = str(Path(sys.executable).with_name("wflo"))


def undo(payload: dict[str, Any], idempotency_key: str) -> None:
    """Test compensation: logs each invocation; applies its effect once per key; can hang once."""
    workdir = Path(payload["dir"])
    with open(workdir / "invocations.log", "a") as log:
        log.write(f"{payload['name']}\n")
    try:
        fd = os.open(
            workdir / f"effect-{idempotency_key.replace(':', '_')}", os.O_CREAT | os.O_EXCL | os.O_WRONLY
        )
    except FileExistsError:
        pass
    else:
        os.close(fd)
        with open(workdir / "effects.log", "a") as log:
            log.write(f"{payload['name']}\n")
    hang_marker = workdir / f"hung-{payload['name']}"
    if payload.get("hang_once") and not hang_marker.exists():
        hang_marker.touch()
        time.sleep(120)  # killed here


def broken(payload: dict[str, Any], idempotency_key: str) -> None:
    raise RuntimeError(f"cannot undo {payload['name']}")


def rollback_cli(run_id: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [WFLO, "runs", "rollback", run_id],
        env=env,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_rollback_runs_each_compensation_once_in_reverse_even_after_sigkill(
    postgres_url: str, tmp_path: Path
) -> None:
    with scratch_database(postgres_url) as url:
        url = url.replace("postgresql://", "postgresql+psycopg://")
        upgrade(url)
        ledger = Ledger(url)
        book = CompensationBook(ledger)
        for name in ("c1", "c2", "c3", "c4"):
            step = "publish" if name != "c3" else "notify"
            book.register(
                run_id="r1",
                workflow="wf",
                step_key=step,
                action=undo,
                payload={"name": name, "dir": str(tmp_path), "hang_once": name == "c3"},
            )
        with ledger.transaction() as session:
            ledger.ensure_run(session, "r2", "wf", parent_run_id="r1")  # a continuation of r1
        book.register(
            run_id="r2",
            workflow="wf",
            step_key="ship",
            action=undo,
            payload={"name": "c5", "dir": str(tmp_path)},
        )
        assert (
            book.register(
                run_id="r2",
                workflow="wf",
                step_key="publish",
                action=undo,
                payload={"name": "c1", "dir": str(tmp_path), "hang_once": False},
            )
            == 1
        ), "a resumed step registering the same undo again gets the existing entry"

        env = {**os.environ, "WFLO_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
        first = rollback_cli("r1", env)
        deadline = time.monotonic() + 60
        while not (tmp_path / "hung-c3").exists():
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.monotonic() < deadline, "rollback never reached c3"
            time.sleep(0.05)
        first.kill()  # SIGKILL in the middle of compensation c3
        first.wait(timeout=30)
        with ledger.transaction() as session:
            status = dict(
                session.execute(
                    select(Compensation.seq, Compensation.status).where(Compensation.run_id == "r1")
                ).all()
            )
        assert status == {4: "done", 3: "running", 2: "registered", 1: "registered"}

        second = rollback_cli("r2", env)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 0, out
        assert "resumed after an interrupted rollback" in out
        assert lines(tmp_path / "effects.log") == ["c5", "c4", "c3", "c2", "c1"], "reverse order, each once"
        assert lines(tmp_path / "invocations.log") == ["c5", "c4", "c3", "c3", "c2", "c1"], (
            "done compensations never run again; only the interrupted one is resumed (same idempotency key)"
        )

        third = rollback_cli("r1", env)
        out, _ = third.communicate(timeout=120)
        assert third.returncode == 0 and out.count("already_done") == 5, out
        assert len(lines(tmp_path / "invocations.log")) == 6
        with ledger.transaction() as session:
            assert set(session.scalars(select(Run.status).where(Run.id.in_(["r1", "r2"])))) == {"rolled_back"}
        ledger.close()


def test_a_failing_compensation_is_reported_and_the_rest_still_run(postgres_url: str, tmp_path: Path) -> None:
    with scratch_database(postgres_url) as url:
        url = url.replace("postgresql://", "postgresql+psycopg://")
        upgrade(url)
        ledger = Ledger(url)
        book = CompensationBook(ledger)
        book.register(
            run_id="r1", workflow="wf", step_key="a", action=undo, payload={"name": "a", "dir": str(tmp_path)}
        )
        book.register(run_id="r1", workflow="wf", step_key="b", action=broken, payload={"name": "b"})
        book.register(
            run_id="r1", workflow="wf", step_key="c", action=undo, payload={"name": "c", "dir": str(tmp_path)}
        )
        proc = subprocess.run(
            [WFLO, "runs", "rollback", "r1"],
            env={**os.environ, "WFLO_DATABASE_URL": url, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == 1
        assert "RuntimeError: cannot undo b" in proc.stdout and "1 compensation(s) failed" in proc.stderr
        assert lines(tmp_path / "effects.log") == ["c", "a"]
        with ledger.transaction() as session:
            run = session.get(Run, "r1")
            assert run.status != "rolled_back" and "rollback incomplete" in run.status_reason
        ledger.close()
