"""Offline playback of a cassette, and recording one from a live provider."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from wflo_core.calls import LLMRequest, LLMResponse
from wflo_core.errors import CassetteMiss, ConfigError
from wflo_core.llm.providers.base import Provider, StreamChunk
from wflo_core.llm.providers.cassette import Cassette, prompt_excerpt, request_fingerprint

_LIVE_SETTING = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
                 "openai_compatible": "WFLO_OPENAI_COMPATIBLE_BASE_URL"}


class ReplayProvider:
    """Serves recorded responses with their recorded usage; never touches the network.

    Responses keep the provider and model that originally answered, so pricing and the ledger
    treat a replayed ``openai``/``gpt-4o-mini`` call exactly like the live one. Given several
    cassettes, a later one wins (your recordings over the shipped examples); missing ones are empty.
    """

    def __init__(self, cassette_path: Path | str | Sequence[Path | str], *, name: str = "replay",
                 recordings_path: Path | None = None, auto: bool = False) -> None:
        """``name`` is the provider it stands in for, so budgets price and breakers key it as that one;
        ``recordings_path`` and ``auto`` only shape the hint a miss gives."""
        self.name = name
        paths = [Path(cassette_path)] if isinstance(cassette_path, str | Path) else [Path(p) for p in cassette_path]
        if not any(p.is_file() for p in paths):
            path = paths[0]
            raise ConfigError(
                f"cassette {path} does not exist; point WFLO_CASSETTE_PATH at a recorded cassette, or "
                f"record one with WFLO_LLM_MODE=record WFLO_CASSETTE_PATH={path} and a provider key"
            )
        self._cassettes = [Cassette(p) for p in paths if p.is_file()]
        self._recordings = recordings_path or paths[-1]
        self._auto = auto

    def complete(self, request: LLMRequest) -> LLMResponse:
        for cassette in reversed(self._cassettes):
            response = cassette.find(request)
            if response is not None:
                return response
        raise self._miss(request)

    def stream(self, request: LLMRequest) -> Iterator[StreamChunk]:
        response = self.complete(request)
        words = response.text.split(" ")
        for index, word in enumerate(words if response.text else ()):
            yield StreamChunk(text=word if index == 0 else " " + word)
        yield StreamChunk(response=response)

    def close(self) -> None:
        """Nothing to release."""

    def _miss(self, request: LLMRequest) -> CassetteMiss:
        excerpt = prompt_excerpt(request.messages)
        live = _LIVE_SETTING.get(request.provider, "the provider's API key")
        what = f"no recorded response for {request.provider} model {request.model!r} (prompt: {excerpt!r})"
        if self._auto:
            message = (f"CassetteMiss: {what} and {live} is not set: set {live} to call the model live, or "
                       f"record the answer once with WFLO_LLM_MODE=record and the key (recordings go to "
                       f"{self._recordings}) and replay it offline")
        else:
            where = ", ".join(f"{c.path} ({len(c)} entries)" for c in self._cassettes)
            message = (f"CassetteMiss: {what} in {where}; the model, messages and parameters must match a "
                       f"recording exactly. Call it live with WFLO_LLM_MODE=live and {live}, or record it with "
                       f"WFLO_LLM_MODE=record (recordings go to {self._recordings})")
        return CassetteMiss(
            message,
            provider=request.provider,
            model=request.model,
            fingerprint=request_fingerprint(request),
            cassette_path=str(self._cassettes[-1].path),
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
