"""wflo's framework-free core: pricing, ledger, budgets, LLM gateway, cache, events, sandbox."""

from wflo_core.config import WfloSettings as WfloSettings
from wflo_core.config import load_settings as load_settings
from wflo_core.errors import WfloError as WfloError

__version__ = "0.1.0"

__all__ = ["WfloError", "WfloSettings", "__version__", "load_settings"]
