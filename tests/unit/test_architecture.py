"""The structure the design promises, enforced: one public surface, layers without cycles, no Dagster in the core."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import wflo_core
import wflo_dagster

ROOT = Path(__file__).resolve().parents[2]

WFLO_DAGSTER_API = [
    "EventSinkResource", "LLMResource", "SandboxResource", "WFLO_HOOKS", "WfloResource", "approval_gate",
    "approvals_sensor", "as_failure", "checkpoint", "cost_check", "cost_checks", "kafka_trigger_sensor", "llm_asset",
    "llm_op", "outbox_relay_sensor", "register_compensation", "resume", "rollback_failed_runs",
    "run_close_out_sensors", "run_code_step", "track_llm_step",
]
WFLO_CORE_API = [
    "AwaitingApproval", "BudgetExceeded", "CallOutcome", "CallScope", "ConfigError", "LLMRequest", "LLMResponse",
    "Message", "ModelNotPriced", "ProviderError", "SandboxError", "ToolCall", "Usage", "WfloError", "WfloServices",
    "WfloSettings", "__version__", "build_services", "load_settings", "parse_usd", "shared_services",
]


def test_the_public_surface_is_pinned_and_every_name_resolves() -> None:
    assert sorted(wflo_dagster.__all__) == sorted(WFLO_DAGSTER_API)
    assert sorted(wflo_core.__all__) == sorted(WFLO_CORE_API)
    for package in (wflo_dagster, wflo_core):
        for name in package.__all__:
            assert getattr(package, name) is not None, name


def test_both_packages_ship_py_typed() -> None:
    assert (ROOT / "wflo_core" / "py.typed").is_file() and (ROOT / "wflo_dagster" / "py.typed").is_file()


def test_every_wflo_core_module_imports_with_dagster_unimportable() -> None:
    modules = [m.name for m in pkgutil.walk_packages(wflo_core.__path__, "wflo_core.")
               if ".migrations.versions" not in m.name and not m.name.endswith("migrations.env")]
    program = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('dagster', 'wflo_dagster') or name.startswith('dagster_'):\n"
        "            raise ImportError(f'{name} is blocked: wflo_core must not need it')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(len(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(modules) > 60


def test_import_contracts_are_kept() -> None:
    """import-linter: wflo_core never imports Dagster or wflo_dagster; its packages form layers."""
    proc = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout
