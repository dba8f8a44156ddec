"""The request and response shapes every provider adapter speaks, independent of any SDK."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from wflo_core.pricing.usage import Usage

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
