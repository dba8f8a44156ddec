"""Real OpenAI and Anthropic SDK clients whose every request goes through the gateway.

    clients = DropinClients(services.gateway, services.settings)
    client = clients.openai(scope)            # an openai.OpenAI; give it to any agent framework
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])   # held, cached, recorded

The SDK's own retries are off: the gateway retries behind the shared breaker, so one SDK call is
one gateway call. In replay mode the answers come from the cassette; in record mode they are
recorded into it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypedDict, Unpack

import httpx2

from wflo_core.budgets import CallScope
from wflo_core.calls import CallOutcome
from wflo_core.config import WfloSettings
from wflo_core.errors import ConfigError
from wflo_core.llm.dropin.provider import HTTPPassthroughProvider
from wflo_core.llm.dropin.transport import AsyncGatewayTransport, GatewayTransport, Route
from wflo_core.llm.gateway import Gateway
from wflo_core.llm.providers.base import Provider
from wflo_core.llm.providers.factory import replay_provider
from wflo_core.llm.providers.replay import RecordingProvider

if TYPE_CHECKING:  # imported by name: the methods called openai and anthropic shadow the modules in the class
    from anthropic import Anthropic, AsyncAnthropic
    from openai import AsyncOpenAI, OpenAI

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
ScopeSource = CallScope | Callable[[], CallScope]


class RouteOptions(TypedDict, total=False):
    """The keyword options every client method takes (see ``DropinClients._route``)."""

    api_key: str | None
    base_url: str | None
    provider: str | None
    call_key: Callable[[], str] | None
    on_outcome: Callable[[CallOutcome], None] | None
    upstream_transport: httpx2.BaseTransport | None


class DropinClients:
    """Builds drop-in SDK clients on one gateway; close it to release their connections."""

    def __init__(self, gateway: Gateway, settings: WfloSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self._providers: list[Provider] = []

    def openai(self, scope: ScopeSource, **options: Unpack[RouteOptions]) -> OpenAI:
        """An ``openai.OpenAI`` for ``scope``; options as in :meth:`route` plus ``api_key``/``base_url``."""
        import openai

        key, url, route = self._route("openai", scope, **options)
        return openai.OpenAI(api_key=key, base_url=url, max_retries=0,
                             http_client=httpx2.Client(transport=GatewayTransport(route)))

    def async_openai(self, scope: ScopeSource, **options: Unpack[RouteOptions]) -> AsyncOpenAI:
        import openai

        key, url, route = self._route("openai", scope, **options)
        return openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=0,
                                  http_client=httpx2.AsyncClient(transport=AsyncGatewayTransport(route)))

    def anthropic(self, scope: ScopeSource, **options: Unpack[RouteOptions]) -> Anthropic:
        import anthropic

        key, url, route = self._route("anthropic", scope, **options)
        return anthropic.Anthropic(api_key=key, base_url=url, max_retries=0,
                                   http_client=httpx2.Client(transport=GatewayTransport(route)))

    def async_anthropic(self, scope: ScopeSource, **options: Unpack[RouteOptions]) -> AsyncAnthropic:
        import anthropic

        key, url, route = self._route("anthropic", scope, **options)
        return anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0,
                                        http_client=httpx2.AsyncClient(transport=AsyncGatewayTransport(route)))

    def close(self) -> None:
        for provider in self._providers:
            provider.close()
        self._providers.clear()

    def _route(self, kind: str, scope: ScopeSource, *, api_key: str | None = None, base_url: str | None = None,
               provider: str | None = None, call_key: Callable[[], str] | None = None,
               on_outcome: Callable[[CallOutcome], None] | None = None,
               upstream_transport: httpx2.BaseTransport | None = None) -> tuple[str, str, Route]:
        """``provider`` prices the calls (default: ``kind``); ``call_key`` names each call in the ledger."""
        s = self.settings
        if kind == "openai":
            url = base_url or s.openai_base_url or OPENAI_URL
            secret = s.openai_api_key
        else:
            url = base_url or s.anthropic_base_url or ANTHROPIC_URL
            secret = s.anthropic_api_key
        key = api_key or (secret.get_secret_value() if secret else None)
        name = provider or kind
        mode = "live" if s.llm_mode == "auto" and key is not None else s.mode_for(kind)
        if key is None and mode != "replay":
            variable = "OPENAI_API_KEY" if kind == "openai" else "ANTHROPIC_API_KEY"
            raise ConfigError(f"live LLM calls need an API key: pass api_key= or set {variable}, "
                              "or replay recorded answers with WFLO_LLM_MODE=replay")
        key = key or "replay"
        auth = {"authorization": f"Bearer {key}"} if kind == "openai" else {"x-api-key": key}
        upstream = self._provider(mode, name, url, auth, upstream_transport)
        gateway = Gateway(replace(self.gateway.parts, provider_for=lambda _name: upstream))
        scope_of = scope if callable(scope) else (lambda: scope)

        def default_key() -> str:
            current = scope_of()
            return f"{current.run_id}:{current.step_key or '-'}:sdk:{uuid.uuid4().hex[:16]}"

        route = Route(gateway=gateway, provider=name, base_path=httpx2.URL(url).path.rstrip("/"),
                      scope=scope_of, call_key=call_key or default_key,
                      default_max_tokens=s.default_max_tokens, on_outcome=on_outcome or (lambda outcome: None))
        return key, url, route

    def _provider(self, mode: str, name: str, url: str, auth: dict[str, str],
                  transport: httpx2.BaseTransport | None) -> Provider:
        """Live: forward upstream; replay: the cassettes; record: forward and record into a cassette."""
        s = self.settings
        if mode == "replay":
            provider: Provider = replay_provider(s, name)
        else:
            provider = HTTPPassthroughProvider(name=name, base_url=url, auth_headers=auth,
                                               timeout=s.llm_timeout_seconds, transport=transport)
            if mode == "record":
                provider = RecordingProvider(provider, s.cassette_path or s.recordings_path)
        self._providers.append(provider)
        return provider
