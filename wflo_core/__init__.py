"""wflo's framework-free core: pricing, ledger, budgets, LLM gateway, cache, events, sandbox.

Code outside Dagster starts from the composition root::

    from wflo_core import CallScope, LLMRequest, Message, load_settings, shared_services

    with shared_services(load_settings()) as services:
        response, outcome = services.gateway.complete(
            LLMRequest(provider="openai", model="gpt-4o-mini", messages=(Message("user", "hi"),)),
            CallScope(run_id="nightly-42", workflow="nightly"), call_key="nightly-42:1")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wflo_core.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "WfloSettings": "wflo_core.config",
    "load_settings": "wflo_core.config",
    "WfloServices": "wflo_core.services",
    "build_services": "wflo_core.services",
    "shared_services": "wflo_core.services",
    "LLMRequest": "wflo_core.calls",
    "LLMResponse": "wflo_core.calls",
    "Message": "wflo_core.calls",
    "ToolCall": "wflo_core.calls",
    "Usage": "wflo_core.calls",
    "CallOutcome": "wflo_core.calls",
    "CallScope": "wflo_core.budgets.scopes",
    "parse_usd": "wflo_core.money",
    "WfloError": "wflo_core.errors",
    "ConfigError": "wflo_core.errors",
    "BudgetExceeded": "wflo_core.errors",
    "ModelNotPriced": "wflo_core.errors",
    "ProviderError": "wflo_core.errors",
    "SandboxError": "wflo_core.errors",
    "AwaitingApproval": "wflo_core.errors",
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from wflo_core.budgets.scopes import CallScope as CallScope
    from wflo_core.calls import CallOutcome as CallOutcome
    from wflo_core.calls import LLMRequest as LLMRequest
    from wflo_core.calls import LLMResponse as LLMResponse
    from wflo_core.calls import Message as Message
    from wflo_core.calls import ToolCall as ToolCall
    from wflo_core.calls import Usage as Usage
    from wflo_core.config import WfloSettings as WfloSettings
    from wflo_core.config import load_settings as load_settings
    from wflo_core.errors import AwaitingApproval as AwaitingApproval
    from wflo_core.errors import BudgetExceeded as BudgetExceeded
    from wflo_core.errors import ConfigError as ConfigError
    from wflo_core.errors import ModelNotPriced as ModelNotPriced
    from wflo_core.errors import ProviderError as ProviderError
    from wflo_core.errors import SandboxError as SandboxError
    from wflo_core.errors import WfloError as WfloError
    from wflo_core.money import parse_usd as parse_usd
    from wflo_core.services import WfloServices as WfloServices
    from wflo_core.services import build_services as build_services
    from wflo_core.services import shared_services as shared_services
