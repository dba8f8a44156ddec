"""Any server that speaks OpenAI's chat completions (vLLM, Ollama, LM Studio), reached by base_url."""

from __future__ import annotations

from wflo_core.llm.providers.base import DEFAULT_TIMEOUT_SECONDS
from wflo_core.llm.providers.openai import OpenAIProvider


class OpenAICompatibleProvider(OpenAIProvider):
    """The OpenAI adapter pointed at another server; local servers usually need no real key."""

    #: vLLM, Ollama and LM Studio understand ``max_tokens``; not all know ``max_completion_tokens``.
    max_tokens_param = "max_tokens"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str = "openai_compatible",
    ) -> None:
        super().__init__(api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, name=name)
