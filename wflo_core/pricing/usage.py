"""Token usage of one LLM call, normalized across providers."""

from __future__ import annotations

from dataclasses import dataclass


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
