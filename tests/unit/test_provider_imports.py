"""A provider's SDK is imported when that provider is first built, never before (replay needs none)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from wflo_core.config import load_settings
from wflo_core.llm.providers import build_provider
settings = load_settings(llm_mode=sys.argv[1], openai_api_key="sk-test", anthropic_api_key="sk-ant-test",
                         openai_compatible_base_url="http://127.0.0.1:9/v1")
for name in sys.argv[2:]:
    build_provider(name, settings).close()
import wflo_core.services, wflo_core.llm.gateway  # the composition root and the gateway
print(json.dumps([sdk for sdk in ("openai", "anthropic") if sdk in sys.modules]))
"""


def sdks_loaded(mode: str, *providers: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode, *providers], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_replay_mode_imports_no_sdk() -> None:
    assert sdks_loaded("replay", "openai", "anthropic") == []


def test_each_live_provider_imports_only_its_own_sdk() -> None:
    assert sdks_loaded("live") == []
    assert sdks_loaded("live", "anthropic") == ["anthropic"]
    assert sdks_loaded("live", "openai") == ["openai"]
    assert sdks_loaded("live", "openai_compatible") == ["openai"]
