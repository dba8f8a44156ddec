"""Build the provider a name and the settings ask for, honouring live/record/replay mode.

A provider's SDK is imported here, when that provider is first built, never at import time.
"""

from __future__ import annotations

from wflo_core.config import WfloSettings
from wflo_core.errors import ConfigError
from wflo_core.llm.providers.base import Provider
from wflo_core.llm.providers.cassette import default_cassette_path
from wflo_core.llm.providers.replay import RecordingProvider, ReplayProvider

PROVIDER_NAMES = ("openai", "anthropic", "openai_compatible", "replay")


def build_provider(name: str, settings: WfloSettings) -> Provider:
    """``replay`` mode (the default) serves every provider name from the cassette; ``record`` wraps live."""
    if name not in PROVIDER_NAMES:
        raise ConfigError(f"unknown LLM provider {name!r}; use one of {', '.join(PROVIDER_NAMES)}")
    if name == "replay" or settings.llm_mode == "replay":
        return ReplayProvider(settings.cassette_path or default_cassette_path(), name=name)
    live = _live_provider(name, settings)
    if settings.llm_mode == "record":
        if settings.cassette_path is None:
            live.close()
            raise ConfigError(
                "WFLO_LLM_MODE=record needs WFLO_CASSETTE_PATH: the file to write recordings to"
            )
        return RecordingProvider(live, settings.cassette_path)
    return live


def _live_provider(name: str, settings: WfloSettings) -> Provider:
    timeout = settings.llm_timeout_seconds
    if name == "openai":
        if settings.openai_api_key is None:
            raise ConfigError(_missing_key("OPENAI_API_KEY"))
        from wflo_core.llm.providers.openai import OpenAIProvider

        return OpenAIProvider(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=timeout,
        )
    if name == "anthropic":
        if settings.anthropic_api_key is None:
            raise ConfigError(_missing_key("ANTHROPIC_API_KEY"))
        from wflo_core.llm.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout=timeout,
        )
    if settings.openai_compatible_base_url is None:
        raise ConfigError(
            "provider 'openai_compatible' needs WFLO_OPENAI_COMPATIBLE_BASE_URL, "
            "e.g. http://localhost:11434/v1 for Ollama or http://localhost:8000/v1 for vLLM"
        )
    from wflo_core.llm.providers.openai_compatible import OpenAICompatibleProvider

    key = settings.openai_compatible_api_key
    return OpenAICompatibleProvider(
        base_url=settings.openai_compatible_base_url,
        api_key=key.get_secret_value() if key else None,
        timeout=timeout,
    )


def _missing_key(variable: str) -> str:
    return (
        f"live LLM calls need an API key: set WFLO_{variable} or {variable}, "
        f"or run offline with WFLO_LLM_MODE=replay"
    )
