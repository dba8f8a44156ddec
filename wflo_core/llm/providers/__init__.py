"""Provider adapters over the real SDKs, plus cassette record/replay."""

from wflo_core.llm.providers.anthropic import AnthropicProvider as AnthropicProvider
from wflo_core.llm.providers.base import Provider as Provider
from wflo_core.llm.providers.base import StreamChunk as StreamChunk
from wflo_core.llm.providers.cassette import Cassette as Cassette
from wflo_core.llm.providers.cassette import default_cassette_path as default_cassette_path
from wflo_core.llm.providers.cassette import request_fingerprint as request_fingerprint
from wflo_core.llm.providers.factory import build_provider as build_provider
from wflo_core.llm.providers.openai import OpenAIProvider as OpenAIProvider
from wflo_core.llm.providers.openai_compatible import OpenAICompatibleProvider as OpenAICompatibleProvider
from wflo_core.llm.providers.replay import RecordingProvider as RecordingProvider
from wflo_core.llm.providers.replay import ReplayProvider as ReplayProvider

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
