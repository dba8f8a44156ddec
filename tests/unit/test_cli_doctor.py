"""``wflo doctor`` on the embedded default and against services that are not there (closed loopback ports)."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.services import free_port
from wflo_dagster.cli import main


def doctor(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, str], str]:
    monkeypatch.setattr(sys, "argv", ["wflo", "doctor"])
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith(("ok ", "FAIL "))}
    return int(exited.value.code or 0), lines, out + err


def test_embedded_default_needs_nothing_but_bubblewrap(capsys, monkeypatch) -> None:
    code, lines, out = doctor(capsys, monkeypatch)
    assert set(lines) == {"ledger", "redis", "events", "sandbox", "llm"}
    assert lines["ledger"].startswith("ok ") and "created on the first run" in lines["ledger"]
    assert lines["redis"].startswith("ok ") and "in-process" in lines["redis"]
    assert lines["events"].startswith("ok ") and "events.jsonl" in lines["events"]
    assert (
        lines["llm"].startswith("ok ") and "replay mode" in lines["llm"] and "recorded calls" in lines["llm"]
    )
    has_bwrap = shutil.which("bwrap") is not None
    assert lines["sandbox"].startswith("ok " if has_bwrap else "FAIL ")
    assert code == (0 if has_bwrap else 1)
    assert "Traceback" not in out


def test_unreachable_services_fail_one_line_each_without_leaking_secrets(capsys, monkeypatch) -> None:
    secrets = {"pg": "pg-S3cret-pw", "redis": "redis-S3cret-pw", "openai": "sk-test-S3cret-key"}
    monkeypatch.setenv("WFLO_DATABASE_URL", f"postgresql://wflo:{secrets['pg']}@127.0.0.1:{free_port()}/wflo")
    monkeypatch.setenv("WFLO_REDIS_URL", f"redis://:{secrets['redis']}@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("WFLO_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("WFLO_DOCKER_HOST", "unix:///nonexistent/wflo-doctor.sock")
    monkeypatch.setenv("WFLO_SANDBOX_BACKEND", "docker")
    monkeypatch.setenv("WFLO_LLM_MODE", "live")
    monkeypatch.setenv("OPENAI_API_KEY", secrets["openai"])
    code, lines, out = doctor(capsys, monkeypatch)
    assert code == 1
    assert "unreachable" in lines["ledger"] and "→ fix: start the database server" in lines["ledger"]
    assert "does not answer PING" in lines["redis"] and "→ fix: start Redis" in lines["redis"]
    assert "gave no metadata" in lines["kafka"] and "→ fix: start the broker" in lines["kafka"]
    assert "unreachable" in lines["sandbox"] and "→ fix: start dockerd" in lines["sandbox"]
    assert lines["llm"].startswith("ok ") and "OPENAI_API_KEY set" in lines["llm"]
    assert "4 check(s) failed: ledger, redis, kafka, sandbox" in out
    for secret in secrets.values():
        assert secret not in out


def test_missing_cassette_and_missing_keys_say_how_to_fix(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WFLO_CASSETTE_PATH", str(tmp_path / "nope.jsonl"))
    code, lines, _ = doctor(capsys, monkeypatch)
    assert code == 1 and "not found → fix: set WFLO_CASSETTE_PATH" in lines["llm"]
    monkeypatch.setenv("WFLO_LLM_MODE", "live")
    code, lines, _ = doctor(capsys, monkeypatch)
    assert code == 1 and "(no API key set) → fix: set OPENAI_API_KEY or ANTHROPIC_API_KEY" in lines["llm"]
