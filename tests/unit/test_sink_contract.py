"""The event sink contract (tests/sink_contract.py) on the memory and JSONL sinks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sink_contract import LIMIT, SinkContract
from wflo_core.events import JsonlEventSink, MemoryEventSink


class TestMemorySink(SinkContract):
    @pytest.fixture
    def topic(self) -> str:
        return "contract.events"

    @pytest.fixture
    def sink(self) -> MemoryEventSink:
        self.memory = MemoryEventSink(max_message_bytes=LIMIT)
        return self.memory

    def read_back(self, topic: str) -> list[bytes]:
        return [m.value for m in self.memory.messages if m.topic == topic]


class TestJsonlSink(SinkContract):
    @pytest.fixture
    def topic(self) -> str:
        return "contract.events"

    @pytest.fixture
    def sink(self, tmp_path: Path) -> JsonlEventSink:
        self.path = tmp_path / "events.jsonl"
        return JsonlEventSink(self.path, max_line_bytes=LIMIT)

    def read_back(self, topic: str) -> list[bytes]:
        # One file holds every topic; records carry no topic, so the contract's topic is the file.
        if not self.path.exists():
            return []
        return [line.encode() for line in self.path.read_text().splitlines() if json.loads(line)]
