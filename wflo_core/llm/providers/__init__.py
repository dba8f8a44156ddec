"""Provider adapters over the real SDKs, plus cassette record/replay.

The SDK adapters load on first use (PEP 562): importing the OpenAI and Anthropic SDKs takes seconds,
and replay mode (the default) needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wflo_core.lazy import lazy_exports
from wflo_core.llm.providers.base import Provider as Provider
from wflo_core.llm.providers.base import StreamChunk as StreamChunk
from wflo_core.llm.providers.cassette import Cassette as Cassette
from wflo_core.llm.providers.cassette import default_cassette_path as default_cassette_path
from wflo_core.llm.providers.cassette import request_fingerprint as request_fingerprint
from wflo_core.llm.providers.factory import build_provider as build_provider
from wflo_core.llm.providers.replay import RecordingProvider as RecordingProvider
from wflo_core.llm.providers.replay import ReplayProvider as ReplayProvider

if TYPE_CHECKING:
    from wflo_core.llm.providers.anthropic import AnthropicProvider as AnthropicProvider
    from wflo_core.llm.providers.openai import OpenAIProvider as OpenAIProvider
    from wflo_core.llm.providers.openai_compatible import OpenAICompatibleProvider as OpenAICompatibleProvider

_SDK_ADAPTERS = {
    "AnthropicProvider": "wflo_core.llm.providers.anthropic",
    "OpenAIProvider": "wflo_core.llm.providers.openai",
    "OpenAICompatibleProvider": "wflo_core.llm.providers.openai_compatible",
}

__all__ = [
    "AnthropicProvider",
    "Cassette",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "Provider",
    "RecordingProvider",
    "ReplayProvider",
    "StreamChunk",
    "build_provider",
    "default_cassette_path",
    "request_fingerprint",
]


__getattr__ = lazy_exports(__name__, _SDK_ADAPTERS)
