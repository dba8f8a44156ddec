"""What one LLM call is: request, response, usage and outcome, independent of any SDK.

A leaf module: every package may import it, and it imports nothing of wflo's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
Api = Literal["chat", "responses", "messages"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text exactly as the model produced it."""


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One logical completion request. Everything that changes the output is in here (cache key)."""

    provider: str
    """``openai``, ``anthropic``, ``openai_compatible`` (vLLM, Ollama, LM Studio) or ``replay``."""
    model: str
    messages: tuple[Message, ...]
    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    """Tool definitions in OpenAI function-tool JSON form; adapters translate for other providers."""
    tool_choice: str | None = None
    response_format: dict[str, Any] | None = None
    api: Api = "chat"
    """Which provider API to use: OpenAI chat completions or Responses, Anthropic messages."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Provider-specific parameters passed through as-is (they are part of the cache key)."""


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """What came back: text, tool calls and the usage the provider billed."""

    provider: str
    model: str
    """The model the provider says answered (may be a dated snapshot of the requested one)."""
    text: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    response_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    """The provider's JSON response, for cassettes and debugging (never includes credentials)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider billed them.

    ``input_tokens`` includes cached and cache-write tokens (they are partitions of the total, as in
    genai-prices); ``output_tokens`` includes ``reasoning_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    """Input tokens read from the provider's prompt cache (billed at the cache-read price)."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache (Anthropic cache creation)."""
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                     "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"Usage.{name} must be >= 0, got {getattr(self, name)}")

    def inconsistency(self) -> str | None:
        """Why these counts cannot all be true at once (parts larger than their whole), or ``None``."""
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            return (f"cached_input_tokens ({self.cached_input_tokens}) + cache_write_tokens "
                    f"({self.cache_write_tokens}) exceed input_tokens ({self.input_tokens})")
        if self.reasoning_tokens > self.output_tokens:
            return f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens ({self.output_tokens})"
        return None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What one gateway call cost, as the step sees it."""

    provider: str
    model: str
    usage: Usage
    cost_usd: Decimal
    saved_usd: Decimal
    cache_hit: bool
    price_version: str
    call_key: str
    call_id: int | None = None
    """The ``llm_calls`` row id (None if the row already existed)."""
