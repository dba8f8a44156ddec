"""A local fake of the OpenAI (chat completions, Responses) and Anthropic (messages) HTTP APIs.

Tests talk to it through the real SDKs over real HTTP. Answers are derived from the request
(same request, same answer) with realistic ``usage``. Tests steer it through ``/_control/*``:
make the next N requests slow or fail (429 + Retry-After, 500, 400, 401), add cached or
reasoning tokens, and count what reached the server. It runs in a thread (``start_in_thread``)
or as its own process (``start_subprocess``, or ``python -m tests.llm_server``); the
``LLMServer`` handle speaks to both the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CREATED = 1_700_000_000
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


@dataclass
class Behavior:
    """What the next ``times`` API requests get (``None`` = every request until reset)."""

    status: int = 200
    delay: float = 0.0
    retry_after: str | None = None
    times: int | None = None


@dataclass
class UsageExtras:
    """Extra usage reported on every answer: prompt-cache and reasoning tokens."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    behavior: Behavior | None = None
    usage: UsageExtras = field(default_factory=UsageExtras)
    counts: Counter[str] = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)

    def take_behavior(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Behavior:
        with self.lock:
            self.counts[path] += 1
            self.log.append({"path": path, "body": body, "headers": headers})
            behavior = self.behavior
            if behavior is None:
                return Behavior()
            if behavior.times is not None:
                behavior.times -= 1
                if behavior.times <= 0:
                    self.behavior = None
            return behavior


# ---------------------------------------------------------------------------------- answers


def _tokens(text: str) -> int:
    """About four characters a token, like the real tokenizers on English text."""
    return max(1, math.ceil(len(text) / 4))


@dataclass
class _Answer:
    """The provider-neutral answer; each API renders it in its own JSON."""

    key: str
    model: str
    text: str
    tool: tuple[str, str, str] | None  # (call id, name, arguments JSON)
    input_tokens: int
    output_tokens: int
    truncated: bool
    extras: UsageExtras


def _answer(
    model: str,
    prompt: list[str],
    last_is_tool_result: bool,
    tools: list[dict[str, Any]],
    tool_choice: Any,
    max_tokens: int,
    extras: UsageExtras,
    body: dict[str, Any],
) -> _Answer:
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    last = prompt[-1] if prompt else ""
    input_tokens = sum(_tokens(p) + 4 for p in prompt) + sum(_tokens(json.dumps(t)) for t in tools)
    tool = None
    if tools and tool_choice not in ("none", {"type": "none"}) and not last_is_tool_result:
        name, schema = tools[0]
        arg = next(iter((schema or {}).get("properties") or {"query": None}))
        tool = (f"call_{key[:12]}", name, json.dumps({arg: last[:60]}, separators=(",", ":")))
        text = ""
    elif last_is_tool_result:
        text = f"Based on the tool result, here is the answer ({key[:6]}): {last[:120]}"
    else:
        text = f"Answer from {model} ({key[:6]}) to: {last[:160]}"
    output_tokens = _tokens(text + (tool[2] if tool else "")) + extras.reasoning_tokens
    truncated = output_tokens > max_tokens
    if truncated:
        text = text[: max(0, (max_tokens - extras.reasoning_tokens) * 4)]
        output_tokens = max_tokens
    return _Answer(key, model, text, tool, input_tokens, output_tokens, truncated, extras)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, dict):
            parts.append(str(block.get("text") or block.get("output") or _text_of(block.get("content"))))
    return " ".join(p for p in parts if p)


def _chat_answer(body: dict[str, Any], extras: UsageExtras) -> _Answer:
    messages = body.get("messages") or []
    tools = [(t["function"]["name"], t["function"].get("parameters")) for t in body.get("tools") or ()]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
    return _answer(
        body["model"],
        [_text_of(m.get("content")) for m in messages],
        bool(messages) and messages[-1].get("role") == "tool",
        tools,
        body.get("tool_choice"),
        max_tokens,
        extras,
        body,
    )


def _responses_answer(body: dict[str, Any], extras: UsageExtras) -> _Answer:
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    prompt = ([body["instructions"]] if body.get("instructions") else []) + [
        _text_of(i.get("content", i.get("output", i.get("arguments", "")))) for i in items
    ]
    tools = [(t["name"], t.get("parameters")) for t in body.get("tools") or () if t.get("type") == "function"]
    last_is_tool = bool(items) and items[-1].get("type") == "function_call_output"
    return _answer(
        body["model"],
        prompt,
        last_is_tool,
        tools,
        body.get("tool_choice"),
        body.get("max_output_tokens") or 4096,
        extras,
        body,
    )


def _anthropic_answer(body: dict[str, Any], extras: UsageExtras) -> _Answer:
    messages = body.get("messages") or []
    prompt = ([_text_of(body["system"])] if body.get("system") else []) + [
        _text_of(m.get("content")) for m in messages
    ]
    last = messages[-1].get("content") if messages else ""
    last_is_tool = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    tools = [(t["name"], t.get("input_schema")) for t in body.get("tools") or ()]
    return _answer(
        body["model"], prompt, last_is_tool, tools, body.get("tool_choice"), body["max_tokens"], extras, body
    )


def _chat_json(a: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None}
    if a.tool:
        message["tool_calls"] = [
            {"id": a.tool[0], "type": "function", "function": {"name": a.tool[1], "arguments": a.tool[2]}}
        ]
    finish = "length" if a.truncated else "tool_calls" if a.tool else "stop"
    return {
        "id": f"chatcmpl-{a.key}",
        "object": "chat.completion",
        "created": CREATED,
        "model": a.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _chat_usage(a),
        "system_fingerprint": "fp_wflo_test",
    }


def _chat_usage(a: _Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": min(a.extras.cached_tokens, a.input_tokens),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": a.extras.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_stream(a: _Answer, include_usage: bool) -> list[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{a.key}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": a.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in _pieces(a.text)]
    if a.tool:
        call_id, name, arguments = a.tool
        half = len(arguments) // 2
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments[:half]},
                        }
                    ]
                }
            )
        )
        events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}))
    events.append(chunk({}, _chat_json(a)["choices"][0]["finish_reason"]))
    if include_usage:
        events.append({**chunk({}), "choices": [], "usage": _chat_usage(a)})
    return [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]


def _responses_json(a: _Answer) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if a.text:
        output.append(
            {
                "type": "message",
                "id": f"msg_{a.key}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": a.text, "annotations": []}],
            }
        )
    if a.tool:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{a.key}",
                "call_id": a.tool[0],
                "name": a.tool[1],
                "arguments": a.tool[2],
                "status": "completed",
            }
        )
    return {
        "id": f"resp_{a.key}",
        "object": "response",
        "created_at": CREATED,
        "model": a.model,
        "status": "incomplete" if a.truncated else "completed",
        "output": output,
        "incomplete_details": {"reason": "max_output_tokens"} if a.truncated else None,
        "error": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": a.input_tokens,
            "input_tokens_details": {"cached_tokens": min(a.extras.cached_tokens, a.input_tokens)},
            "output_tokens": a.output_tokens,
            "output_tokens_details": {"reasoning_tokens": a.extras.reasoning_tokens},
            "total_tokens": a.input_tokens + a.output_tokens,
        },
    }


def _responses_stream(a: _Answer) -> list[str]:
    final = _responses_json(a)
    events = [{"type": "response.created", "response": {**final, "status": "in_progress", "output": []}}]
    events += [
        {
            "type": "response.output_text.delta",
            "item_id": f"msg_{a.key}",
            "output_index": 0,
            "content_index": 0,
            "delta": piece,
        }
        for piece in _pieces(a.text)
    ]
    events.append({"type": f"response.{final['status']}", "response": final})
    return [
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n"
        for i, e in enumerate(events)
    ]


def _anthropic_json(a: _Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": a.text}] if a.text else []
    if a.tool:
        content.append(
            {"type": "tool_use", "id": f"toolu_{a.key}", "name": a.tool[1], "input": json.loads(a.tool[2])}
        )
    cached = min(a.extras.cached_tokens, a.input_tokens)
    written = min(a.extras.cache_write_tokens, a.input_tokens - cached)
    stop = "max_tokens" if a.truncated else "tool_use" if a.tool else "end_turn"
    return {
        "id": f"msg_{a.key}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": a.input_tokens - cached - written,
            "output_tokens": a.output_tokens,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": cached,
        },
    }


def _anthropic_stream(a: _Answer) -> list[str]:
    final = _anthropic_json(a)
    start = {**final, "content": [], "stop_reason": None, "usage": {**final["usage"], "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(final["content"]):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            events += [
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }
                for piece in _pieces(block["text"])
            ]
        else:
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                }
            )
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": final["usage"]["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


# ---------------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the tests assert on counts, not on an access log."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        state = self.server.state
        if self.path == "/_control/stats":
            with state.lock:
                self._json(
                    200,
                    {
                        "total": sum(state.counts.values()),
                        "by_path": dict(state.counts),
                        "log": list(state.log),
                    },
                )
        else:
            self._json(404, {"error": {"message": f"no route GET {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.startswith("/_control/"):
            self._control(self.path.removeprefix("/_control/"), body)
            return
        routes = {
            "/v1/chat/completions": (_chat_answer, _chat_json),
            "/v1/responses": (_responses_answer, _responses_json),
            "/v1/messages": (_anthropic_answer, _anthropic_json),
        }
        if self.path not in routes:
            self._json(404, {"error": {"message": f"no route POST {self.path}"}})
            return
        state = self.server.state
        headers = {
            k.lower(): v for k, v in self.headers.items() if k.lower() not in ("authorization", "x-api-key")
        }
        behavior = state.take_behavior(self.path, body, headers)
        anthropic = self.path == "/v1/messages"
        if behavior.delay:
            time.sleep(behavior.delay)
        if not (self.headers.get("authorization") or self.headers.get("x-api-key")):
            behavior = Behavior(status=401)
        if behavior.status != 200:
            self._error(behavior, anthropic)
            return
        make_answer, render = routes[self.path]
        answer = make_answer(body, state.usage)
        if not body.get("stream"):
            self._json(200, render(answer))
        elif self.path == "/v1/chat/completions":
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._sse(_chat_stream(answer, include_usage))
        elif anthropic:
            self._sse(_anthropic_stream(answer))
        else:
            self._sse(_responses_stream(answer))

    def _control(self, action: str, body: dict[str, Any]) -> None:
        state = self.server.state
        with state.lock:
            if action == "behavior":
                state.behavior = Behavior(**body)
            elif action == "usage":
                state.usage = UsageExtras(**body)
            elif action == "reset":
                state.behavior, state.usage = None, UsageExtras()
                state.counts.clear()
                state.log.clear()
            else:
                self._json(404, {"error": {"message": f"unknown control {action!r}"}})
                return
        self._json(200, {"ok": True})

    def _error(self, behavior: Behavior, anthropic: bool) -> None:
        kind = _ERROR_TYPES.get(behavior.status, "api_error")
        message = f"fake server answered {behavior.status} as instructed"
        body = (
            {"type": "error", "error": {"type": kind, "message": message}}
            if anthropic
            else {"error": {"message": message, "type": kind, "param": None, "code": None}}
        )
        extra = {"retry-after": behavior.retry_after} if behavior.retry_after is not None else {}
        self._json(behavior.status, body, extra)

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(event.encode())
            self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected in fault tests, not a server bug."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------- handle


class LLMServer:
    """Steer and inspect a running fake server, whether it runs in a thread or another process."""

    def __init__(self, base_url: str, stop: Any) -> None:
        self.base_url = base_url
        """``http://127.0.0.1:PORT``; the Anthropic SDK's base_url."""
        self.openai_base_url = base_url + "/v1"
        self._stop = stop

    def set_behavior(
        self,
        *,
        status: int = 200,
        delay: float = 0.0,
        retry_after: str | float | None = None,
        times: int | None = None,
    ) -> None:
        """The next ``times`` API requests (None: all, until reset) wait ``delay`` s, answer ``status``."""
        after = None if retry_after is None else str(retry_after)
        self._post("behavior", asdict(Behavior(status, delay, after, times)))

    def set_usage(
        self, *, cached_tokens: int = 0, cache_write_tokens: int = 0, reasoning_tokens: int = 0
    ) -> None:
        """Report these prompt-cache and reasoning tokens on every answer until reset."""
        self._post("usage", asdict(UsageExtras(cached_tokens, cache_write_tokens, reasoning_tokens)))

    def request_count(self, path: str | None = None) -> int:
        """API requests received (all paths, or one such as ``/v1/chat/completions``), incl. failed ones."""
        stats = self._stats()
        return stats["total"] if path is None else stats["by_path"].get(path, 0)

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every API request received: ``{"path", "body", "headers"}`` (credentials removed)."""
        return [r for r in self._stats()["log"] if path is None or r["path"] == path]

    def reset(self) -> None:
        self._post("reset", {})

    def stop(self) -> None:
        self._stop()

    def _stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_control/stats", timeout=10) as response:
            return json.loads(response.read())

    def _post(self, action: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.base_url + f"/_control/{action}",
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def start_in_thread() -> LLMServer:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, name="fake-llm-server", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return LLMServer(f"http://127.0.0.1:{server.server_address[1]}", stop)


def start_subprocess() -> LLMServer:
    """The server in its own process, for tests where the server must outlive or stay apart from pytest."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_server"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        raise RuntimeError(f"fake LLM server did not start: {line!r}")

    def stop() -> None:
        process.terminate()
        process.wait(timeout=10)

    return LLMServer(line, stop)


if __name__ == "__main__":
    _server = _Server()
    print(f"http://127.0.0.1:{_server.server_address[1]}", flush=True)
    _server.serve_forever()
