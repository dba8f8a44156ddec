"""The ways in: ``wflo sandbox run`` and the Dagster ``SandboxResource`` (process backend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import MaterializeResult, asset, materialize

from wflo_core.sandbox import open_sandbox, result_metadata, run_sandboxed
from wflo_core.sandbox.docker import DockerSandbox
from wflo_core.sandbox.process import ProcessSandbox
from wflo_dagster.resources.sandbox import SandboxResource

pytestmark = pytest.mark.integration


def _wflo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from wflo_dagster.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_runs_a_file_with_inputs(bubblewrap: str, tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("import sys\nprint(open('in.txt').read().upper())\nsys.exit(4)\n")
    (tmp_path / "in.txt").write_text("hello")
    done = _wflo(
        "sandbox", "run", str(tmp_path / "prog.py"), "--backend", "process", "-i", str(tmp_path / "in.txt")
    )
    assert done.returncode == 4
    assert done.stdout == "HELLO\n"
    assert "[process] exit 4" in done.stderr


def test_cli_json_reports_a_timeout(bubblewrap: str, tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(60)\n")
    done = _wflo(
        "sandbox", "run", str(tmp_path / "slow.py"), "--backend", "process", "--timeout", "1", "--json"
    )
    record = json.loads(done.stdout)
    assert done.returncode == 137
    assert record["killed_reason"] == "timeout" and record["limits"]["timeout_seconds"] == 1.0


def test_cli_bad_backend_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("print(1)")
    done = _wflo("sandbox", "run", str(tmp_path / "p.py"), "--backend", "vm")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: --backend must be docker or process, not 'vm'"


def test_resource_runs_llm_code_in_an_asset(bubblewrap: str) -> None:
    reply = (
        "```python\nimport json\nrows = open('rows.txt').read().split()\nprint(json.dumps(len(rows)))\n```"
    )

    @asset
    def counted(sandbox: SandboxResource) -> MaterializeResult:
        result = run_sandboxed(sandbox.get_sandbox(), reply, files_in={"rows.txt": "a\nb\nc\n"})
        return MaterializeResult(metadata={**result_metadata(result), "count": json.loads(result.stdout)})

    outcome = materialize(
        [counted], resources={"sandbox": SandboxResource(backend="process", timeout_seconds=20)}
    )
    assert outcome.success
    metadata = outcome.asset_materializations_for_node("counted")[0].metadata
    assert metadata["count"].value == 3
    assert metadata["wflo/sandbox_backend"].value == "process"
    assert metadata["wflo/sandbox_exit_code"].value == 0
    assert metadata["wflo/sandbox_stdout"].value == "3\n"


def test_warm_pool_defaults_per_backend(
    bubblewrap: str, docker_host: str, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset, the process backend keeps two sandboxes set up ahead and Docker no idle container."""
    monkeypatch.setenv("WFLO_SANDBOX_IMAGE", sandbox_image)
    monkeypatch.setenv("WFLO_DOCKER_HOST", docker_host)
    with open_sandbox(backend="process") as process, open_sandbox(backend="docker") as container:
        assert isinstance(process, ProcessSandbox) and process.warm_pool_size == 2
        assert isinstance(container, DockerSandbox) and container.pool is None
    monkeypatch.setenv("WFLO_SANDBOX_WARM_POOL", "0")
    with open_sandbox(backend="process") as cold:
        assert isinstance(cold, ProcessSandbox) and cold.warm_pool_size == 0
        assert cold.run("print(1)").ok and cold.warm_runs == 0
