"""Offline playback of a cassette, and recording one from a live provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from wflo_core.calls import LLMRequest, LLMResponse
from wflo_core.errors import CassetteMiss, ConfigError
from wflo_core.llm.providers.base import Provider, StreamChunk
from wflo_core.llm.providers.cassette import Cassette, prompt_excerpt, request_fingerprint


class ReplayProvider:
    """Serves recorded responses with their recorded usage; never touches the network.

    Responses keep the provider and model that originally answered, so pricing and the ledger
    treat a replayed ``openai``/``gpt-4o-mini`` call exactly like the live one.
    """

    def __init__(self, cassette_path: Path | str, *, name: str = "replay") -> None:
        """``name`` is the provider it stands in for, so budgets price and breakers key it as that one."""
        self.name = name
        path = Path(cassette_path)
        if not path.is_file():
            raise ConfigError(
                f"cassette {path} does not exist; point WFLO_CASSETTE_PATH at a recorded cassette, or "
                f"record one with WFLO_LLM_MODE=record WFLO_CASSETTE_PATH={path} and a provider key"
            )
        self._cassette = Cassette(path)

    def complete(self, request: LLMRequest) -> LLMResponse:
        response = self._cassette.find(request)
        if response is None:
            raise self._miss(request)
        return response

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        response = self.complete(request)
        words = response.text.split(" ")
        for index, word in enumerate(words if response.text else ()):
            yield StreamChunk(text=word if index == 0 else " " + word)
        yield StreamChunk(response=response)

    def close(self) -> None:
        """Nothing to release."""

    def _miss(self, request: LLMRequest) -> CassetteMiss:
        path = self._cassette.path
        excerpt = prompt_excerpt(request.messages)
        return CassetteMiss(
            f"CassetteMiss: no recorded response for {request.provider} model {request.model!r} "
            f"(prompt: {excerpt!r}) in cassette {path} ({len(self._cassette)} entries); the model, "
            f"messages and parameters must match a recording exactly. Record it with "
            f"WFLO_LLM_MODE=record WFLO_CASSETTE_PATH={path} and the provider's API key",
            provider=request.provider,
            model=request.model,
            fingerprint=request_fingerprint(request),
            cassette_path=str(path),
            prompt_excerpt=excerpt,
        )


class RecordingProvider:
    """Calls a live provider and appends every successful response to a cassette."""

    def __init__(self, inner: Provider, cassette_path: Path | str) -> None:
        self._inner = inner
        self._cassette = Cassette(cassette_path)

    @property
    def name(self) -> str:
        return self._inner.name

    def complete(self, request: LLMRequest) -> LLMResponse:
        response = self._inner.complete(request)
        self._cassette.record(request, response)
        return response

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        for chunk in self._inner.stream(request):
            if chunk.response is not None:
                self._cassette.record(request, chunk.response)
            yield chunk

    def close(self) -> None:
        self._inner.close()
