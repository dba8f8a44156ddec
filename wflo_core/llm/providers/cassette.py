"""Cassette files: recorded LLM responses with their real usage, keyed by a request fingerprint.

A cassette is JSON Lines, one entry per recorded call::

    {"format": 1, "fingerprint": "<sha256>", "provider": "openai", "model": "gpt-4o-mini",
     "request": {...every output-affecting field...}, "response": {...LLMResponse...}}

Only request and response bodies are stored, never headers, so keys cannot leak into a cassette.
When a fingerprint occurs twice, the later line wins (re-recording appends).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import threading
from pathlib import Path
from typing import Any

from wflo_core.calls import LLMRequest, LLMResponse, Message, ToolCall, Usage
from wflo_core.errors import ConfigError

CASSETTE_FORMAT = 1


def request_fingerprint(request: LLMRequest) -> str:
    """A canonical hash of everything in the request that can change the answer."""
    canonical = json.dumps(
        request_to_json(request), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_to_json(request: LLMRequest) -> dict[str, Any]:
    return dataclasses.asdict(request)


def request_from_json(data: dict[str, Any]) -> LLMRequest:
    """The request stored in a cassette entry, e.g. to see exactly what a pipeline must send."""
    messages = tuple(
        Message(
            m["role"],
            m["content"],
            tuple(ToolCall(**c) for c in m.get("tool_calls") or ()),
            m.get("tool_call_id"),
        )
        for m in data["messages"]
    )
    return LLMRequest(
        **{
            **data,
            "messages": messages,
            "stop": tuple(data.get("stop") or ()),
            "tools": tuple(data.get("tools") or ()),
        }
    )


def response_to_json(response: LLMResponse) -> dict[str, Any]:
    return dataclasses.asdict(response)


def response_from_json(data: dict[str, Any]) -> LLMResponse:
    return LLMResponse(
        provider=data["provider"],
        model=data["model"],
        text=data["text"],
        usage=Usage(**data["usage"]),
        tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls") or ()),
        finish_reason=data.get("finish_reason"),
        response_id=data.get("response_id"),
        raw=data.get("raw") or {},
    )


def prompt_excerpt(messages: tuple[Message, ...], limit: int = 80) -> str:
    """The last user message, shortened: enough to recognise which call missed."""
    text = next((m.content for m in reversed(messages) if m.role == "user"), "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


CASSETTE_ENTRY_POINTS = "wflo.cassettes"
"""Packages register the cassettes they ship (the example pipelines do) under this entry-point group."""


@functools.cache
def default_cassette_path() -> Path:
    """The cassette registered under the ``wflo.cassettes`` entry points (the example pipelines' one),
    so the core finds it without knowing which package ships it. Looked up once per process: reading
    every installed distribution's entry points takes a tenth of a second, and each replay provider asks."""
    for entry_point in sorted(importlib.metadata.entry_points(group=CASSETTE_ENTRY_POINTS), key=lambda e: e.name):
        return Path(entry_point.load())
    raise ConfigError("no replay cassette is registered (is wflo installed with `pip install -e .`?); "
                      "set WFLO_CASSETTE_PATH to a cassette file")


class Cassette:
    """One cassette file: an index of recorded responses, and appends for new recordings."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._entries = self._read()

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, request: LLMRequest) -> LLMResponse | None:
        entry = self._entries.get(request_fingerprint(request))
        return None if entry is None else response_from_json(entry["response"])

    def record(self, request: LLMRequest, response: LLMResponse) -> None:
        """Append one entry; a single ``write`` of one line keeps concurrent appenders from interleaving."""
        fingerprint = request_fingerprint(request)
        entry = {
            "format": CASSETTE_FORMAT,
            "fingerprint": fingerprint,
            "provider": response.provider,
            "model": request.model,
            "request": request_to_json(request),
            "response": response_to_json(response),
        }
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line)
            self._entries[fingerprint] = entry

    def _read(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        with self.path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    if entry["format"] != CASSETTE_FORMAT:
                        raise ValueError(f"format {entry['format']!r}, expected {CASSETTE_FORMAT}")
                    entries[entry["fingerprint"]] = entry
                except (ValueError, KeyError, TypeError) as err:
                    raise ConfigError(
                        f"cassette {self.path} line {number} is not a valid entry ({err}); "
                        f"re-record it with WFLO_LLM_MODE=record"
                    ) from err
        return entries
