"""Legitimate programs work the same in every backend: files in and out, stdlib, structured output."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration import sandbox_backends
from wflo_core.errors import ConfigError
from wflo_core.sandbox import Sandbox, SandboxLimits, run_sandboxed

pytestmark = pytest.mark.integration

# The shared contract fixtures: one sandbox per backend, and the nothing-left-behind check.
sandbox = sandbox_backends.sandbox
nothing_left_behind = sandbox_backends.nothing_left_behind


ANALYSIS = """
import csv, decimal, hashlib, json, pathlib, sqlite3, statistics

rows = list(csv.DictReader(open("data/sales.csv")))
totals = {}
for row in rows:
    totals[row["region"]] = totals.get(row["region"], decimal.Decimal(0)) + decimal.Decimal(row["amount"])
db = sqlite3.connect(":memory:")
db.execute("create table t (x int)")
db.executemany("insert into t values (?)", [(i,) for i in range(10)])
config = json.loads(pathlib.Path("config.json").read_text())
pathlib.Path("out").mkdir()
pathlib.Path("out/report.json").write_text(json.dumps({k: str(v) for k, v in sorted(totals.items())}))
pathlib.Path("out/blob.bin").write_bytes(bytes(range(256)))
print(json.dumps({
    "regions": sorted(totals),
    "mean": str(statistics.mean(decimal.Decimal(r["amount"]) for r in rows)),
    "sqlite_sum": db.execute("select sum(x) from t").fetchone()[0],
    "sha": hashlib.sha256(open("data/sales.csv", "rb").read()).hexdigest(),
    "label": config["label"],
}))
import sys
print("done", file=sys.stderr)
"""
SALES = "region,amount\nnorth,10.50\nsouth,4.25\nnorth,0.25\n"


def test_reads_inputs_writes_outputs_uses_stdlib_and_returns_json(sandbox: Sandbox) -> None:
    import hashlib

    files_in = {"data/sales.csv": SALES, "config.json": json.dumps({"label": "q3"})}
    result = sandbox.run(ANALYSIS, files_in=files_in, timeout=30)
    assert result.ok, result.stderr_text
    assert json.loads(result.stdout_text) == {
        "regions": ["north", "south"],
        "mean": "5",
        "sqlite_sum": 45,
        "sha": hashlib.sha256(SALES.encode()).hexdigest(),
        "label": "q3",
    }
    assert result.stderr == b"done\n"  # stdout and stderr are kept apart
    assert json.loads(result.files_out["out/report.json"]) == {"north": "10.75", "south": "4.25"}
    assert result.files_out["out/blob.bin"] == bytes(range(256))
    assert result.files_out["data/sales.csv"] == SALES.encode()
    assert result.wall_ms > 0 and result.cpu_ms is not None and result.peak_memory_bytes


def test_exit_code_and_stderr_of_a_failing_program(sandbox: Sandbox) -> None:
    result = sandbox.run("import sys\nprint('partial')\nraise SystemExit(3)\n", timeout=20)
    assert (result.exit_code, result.killed_reason, result.ok) == (3, None, False)
    assert result.stdout == b"partial\n"
    crash = sandbox.run("1 / 0", timeout=20)
    assert crash.exit_code == 1 and b"ZeroDivisionError" in crash.stderr


def test_command_and_other_languages(sandbox: Sandbox) -> None:
    shell = sandbox.run('echo "$((6 * 7))" > answer.txt; cat answer.txt', language="bash", timeout=20)
    assert shell.ok and shell.stdout == b"42\n" and shell.files_out["answer.txt"] == b"42\n"
    command = sandbox.run(
        command=["python3", "job.py", "arg"], files_in={"job.py": "import sys; print(sys.argv[1:])"}
    )
    assert command.ok and command.stdout == b"['arg']\n"
    missing = sandbox.run(command=["no-such-program"], timeout=20)
    assert missing.exit_code == 127 or (missing.exit_code or 0) >= 1 and not missing.ok


def test_llm_reply_is_unwrapped_and_recorded(sandbox: Sandbox) -> None:
    reply = "Sure! Here is the program:\n```python\nimport json\nprint(json.dumps({'n': 21 * 2}))\n```\n"
    limits = SandboxLimits(timeout_seconds=20, memory_bytes=128 * 1024 * 1024)
    result = run_sandboxed(sandbox, reply, limits=limits)
    assert json.loads(result.stdout_text) == {"n": 42}
    record = result.to_record()
    assert record["backend"] == sandbox.name and record["exit_code"] == 0 and record["killed_reason"] is None
    assert record["stdout_excerpt"] == '{"n": 42}\n'
    assert record["limits"]["memory_bytes"] == 128 * 1024 * 1024 and record["limits"]["cpu_seconds"] == 20


def test_devices_and_tempfiles_still_work(sandbox: Sandbox) -> None:
    code = """
import os, tempfile
open("/dev/null", "w").write("discarded")
assert len(os.urandom(16)) == 16
with tempfile.NamedTemporaryFile(dir=".") as fh:
    fh.write(b"x")
print(tempfile.gettempdir(), os.getcwd())
"""
    result = sandbox.run(code, timeout=20)
    assert result.ok, result.stderr_text
    assert result.stdout_text.split() == ["/work", "/work"]


def test_network_and_bad_inputs_are_refused_before_running(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError, match="never gets network"):
        sandbox.run("print(1)", network=True)
    with pytest.raises(ConfigError, match="relative path"):
        sandbox.run("print(1)", files_in={"../escape.txt": "x"})
    with pytest.raises(ConfigError, match="work dir limit"):
        sandbox.run("print(1)", files_in={"big": b"x" * 2048}, limits=SandboxLimits(workdir_bytes=1024))


def test_large_binary_files_round_trip(sandbox: Sandbox) -> None:
    import hashlib

    blob = os.urandom(5 * 1024 * 1024)
    code = "import hashlib, shutil\nprint(hashlib.sha256(open('blob', 'rb').read()).hexdigest())\n"
    code += "shutil.copy('blob', 'copy')\n"
    result = sandbox.run(code, files_in={"blob": blob}, timeout=60)
    assert result.ok, result.stderr_text
    assert result.stdout_text.strip() == hashlib.sha256(blob).hexdigest()
    assert result.files_out["copy"] == blob


def test_concurrent_runs_are_isolated_from_each_other(sandbox: Sandbox) -> None:
    from concurrent.futures import ThreadPoolExecutor

    code = "import os, time\nopen('mine.txt', 'w').write(open('id.txt').read())\ntime.sleep(0.5)\n"
    code += "print(sorted(os.listdir('.')), open('mine.txt').read())\n"
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(lambda i: sandbox.run(code, files_in={"id.txt": str(i)}, timeout=30), range(3))
        )
    assert [r.stdout_text for r in results] == [f"['id.txt', 'main.py', 'mine.txt'] {i}\n" for i in range(3)]
