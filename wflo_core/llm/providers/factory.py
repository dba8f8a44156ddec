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
    """``auto`` (the default) calls live when the provider's key is set and otherwise replays recordings;
    ``replay`` serves every provider name from the cassettes; ``record`` wraps live."""
    if name not in PROVIDER_NAMES:
        raise ConfigError(f"unknown LLM provider {name!r}; use one of {', '.join(PROVIDER_NAMES)}")
    mode = settings.mode_for(name)
    if name == "replay" or mode == "replay":
        return replay_provider(settings, name)
    live = _live_provider(name, settings)
    if mode == "record":
        return RecordingProvider(live, settings.cassette_path or settings.recordings_path)
    return live


def replay_provider(settings: WfloSettings, name: str) -> ReplayProvider:
    """Recorded answers: ``WFLO_CASSETTE_PATH``, or the shipped examples' cassette plus your recordings."""
    paths = [settings.cassette_path] if settings.cassette_path else [default_cassette_path(),
                                                                      settings.recordings_path]
    return ReplayProvider(paths, name=name, recordings_path=settings.cassette_path or settings.recordings_path,
                          auto=settings.llm_mode == "auto")


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
