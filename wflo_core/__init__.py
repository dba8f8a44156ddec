"""wflo's framework-free core: pricing, ledger, budgets, LLM gateway, cache, events, sandbox.

The public names load on first use (PEP 562), so importing a leaf module such as ``wflo_core.errors``
does not pay for pydantic-settings: the ``wflo`` CLI's start time depends on it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wflo_core.config import WfloSettings as WfloSettings
    from wflo_core.config import load_settings as load_settings
    from wflo_core.errors import WfloError as WfloError

__version__ = "0.1.0"

_LAZY = {"WfloSettings": "wflo_core.config", "load_settings": "wflo_core.config", "WfloError": "wflo_core.errors"}

__all__ = ["WfloError", "WfloSettings", "__version__", "load_settings"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wflo_core' has no attribute {name!r}")
