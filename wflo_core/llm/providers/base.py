"""The one interface every LLM backend implements, so the gateway never sees an SDK."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from wflo_core.calls import LLMRequest, LLMResponse

DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed completion; the last chunk of every stream carries ``response``."""

    text: str = ""
    """Text added by this chunk (empty on the final chunk and on tool-call progress)."""
    response: LLMResponse | None = None
    """The complete response with the billed usage; set on the final chunk only."""


@runtime_checkable
class Provider(Protocol):
    """Sends one request to one LLM backend. No retries, no caching: the gateway does those."""

    @property
    def name(self) -> str:
        """The provider name recorded in the ledger and used for pricing (``openai``, ``anthropic``...)."""
        ...

    def complete(self, request: LLMRequest) -> LLMResponse:
        """One call; raises a ``ProviderError`` subclass on failure."""
        ...

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        """One streamed call; the final chunk holds the full ``LLMResponse`` including usage."""
        ...

    def close(self) -> None:
        """Release HTTP connections."""
        ...
