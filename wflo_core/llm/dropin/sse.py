"""Server-sent events of the three APIs: passed through untouched, and read on the way for usage.

The SDK gets the upstream bytes as they arrive; :class:`StreamReader` assembles the same answer
the non-streaming API would have returned, so a stream is priced like a completion.
"""

from __future__ import annotations

import json
from typing import Any

from wflo_core.calls import Api

SSE_KEY = "wflo_sse"
"""``LLMResponse.raw`` key of a streamed answer's full event text, replayed on a cache hit or from a cassette."""


class StreamReader:
    """Feed it the stream's bytes; ``answer()`` is the assembled JSON answer once usage has arrived."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._buffer = b""
        self._text: list[str] = []
        self._raw: list[bytes] = []
        self._chat: dict[str, Any] = {"calls": {}, "content": [], "finish": None, "usage": None, "head": {}}
        self._final: dict[str, Any] | None = None
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json_parts: dict[int, list[str]] = {}

    def feed(self, data: bytes) -> None:
        self._raw.append(data)
        self._buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            lines = event.decode("utf-8", "replace").split("\n")
            payload = "\n".join(line[5:].lstrip() for line in lines if line.startswith("data:"))
            if payload and payload != "[DONE]":
                try:
                    self._event(json.loads(payload))
                except ValueError:
                    continue  # keep-alive comments and partial garbage are not ours to judge

    @property
    def text(self) -> str:
        """Everything received so far, as the SDK saw it."""
        return b"".join(self._raw).decode("utf-8", "replace")

    def answer(self) -> dict[str, Any] | None:
        """The whole answer in the non-streaming JSON shape, or None if the stream never reported usage."""
        if self.api == "responses":
            return self._final
        if self.api == "messages":
            return self._anthropic_answer()
        return self._chat_answer()

    def _event(self, data: dict[str, Any]) -> None:
        if self.api == "responses":
            if data.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                self._final = data.get("response")
        elif self.api == "messages":
            self._anthropic_event(data)
        else:
            self._chat_event(data)

    # ------------------------------------------------------------------ chat completions

    def _chat_event(self, data: dict[str, Any]) -> None:
        chat = self._chat
        chat["head"] = {k: data[k] for k in ("id", "created", "model", "system_fingerprint") if k in data}
        chat["usage"] = data.get("usage") or chat["usage"]
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            chat["finish"] = choice.get("finish_reason") or chat["finish"]
            if delta.get("content"):
                chat["content"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                acc = chat["calls"].setdefault(call.get("index", 0), {"id": "", "type": "function",
                                                                       "function": {"name": "", "arguments": ""}})
                acc["id"] = call.get("id") or acc["id"]
                function = call.get("function") or {}
                acc["function"]["name"] += function.get("name") or ""
                acc["function"]["arguments"] += function.get("arguments") or ""

    def _chat_answer(self) -> dict[str, Any] | None:
        chat = self._chat
        if not chat["usage"]:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(chat["content"]) or None}
        if chat["calls"]:
            message["tool_calls"] = [chat["calls"][i] for i in sorted(chat["calls"])]
        return {**chat["head"], "object": "chat.completion", "usage": chat["usage"],
                "choices": [{"index": 0, "message": message, "finish_reason": chat["finish"]}]}

    # ------------------------------------------------------------------ Anthropic messages

    def _anthropic_event(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start":
            self._message = dict(data.get("message") or {})
        elif kind == "content_block_start":
            self._blocks[data["index"]] = dict(data.get("content_block") or {})
        elif kind == "content_block_delta":
            delta, block = data.get("delta") or {}, self._blocks.setdefault(data["index"], {"type": "text"})
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif delta.get("type") == "input_json_delta":
                self._json_parts.setdefault(data["index"], []).append(delta.get("partial_json", ""))
        elif kind == "message_delta" and self._message is not None:
            self._message.update({k: v for k, v in (data.get("delta") or {}).items() if v is not None})
            self._message["usage"] = {**(self._message.get("usage") or {}), **(data.get("usage") or {}),
                                      "final": True}

    def _anthropic_answer(self) -> dict[str, Any] | None:
        message = self._message
        if message is None or "final" not in (message.get("usage") or {}):
            return None
        usage = {k: v for k, v in message["usage"].items() if k != "final"}
        content = []
        for index in sorted(self._blocks):
            block = dict(self._blocks[index])
            if index in self._json_parts:
                block["input"] = json.loads("".join(self._json_parts[index]) or "{}")
            content.append(block)
        return {**message, "usage": usage, "content": content}
