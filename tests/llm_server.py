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
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.llm_server_answers import (
    UsageExtras,
    anthropic_answer,
    anthropic_json,
    anthropic_stream,
    chat_answer,
    chat_json,
    chat_stream,
    responses_answer,
    responses_json,
    responses_stream,
)

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
    drop: bool = False
    """Answer 200, send half the body (or half the stream, without its usage), then drop the connection."""


_MARK = re.compile(r"\[(fail:(\d{3})\*(\d+)|delay:([\d.]+)|drop)\]")


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    behavior: Behavior | None = None
    usage: UsageExtras = field(default_factory=UsageExtras)
    counts: Counter[str] = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)
    sends: Counter[str] = field(default_factory=Counter)

    def take_behavior(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Behavior:
        with self.lock:
            self.counts[path] += 1
            self.log.append({"path": path, "body": body, "headers": headers})
            if marked := self._marked(body):
                return marked
            behavior = self.behavior
            if behavior is None:
                return Behavior()
            if behavior.times is not None:
                behavior.times -= 1
                if behavior.times <= 0:
                    self.behavior = None
            return behavior

    def _marked(self, body: dict[str, Any]) -> Behavior | None:
        """Per-request behaviour from markers in the prompt, for tests with many concurrent callers:
        ``[fail:500*2]`` fails the first 2 sends of this exact request, ``[delay:0.3]`` waits,
        ``[drop]`` drops the connection mid-answer."""
        text = json.dumps(body.get("messages") or body.get("input") or "")
        marks = _MARK.findall(text)
        if not marks:
            return None
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        self.sends[key] += 1
        behavior = Behavior()
        for whole, status, times, delay in marks:
            if whole.startswith("fail") and self.sends[key] <= int(times):
                behavior.status = int(status)
            elif whole.startswith("delay"):
                behavior.delay = float(delay)
            elif whole == "drop":
                behavior.drop = True
        return behavior


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
            "/v1/chat/completions": (chat_answer, chat_json),
            "/v1/responses": (responses_answer, responses_json),
            "/v1/messages": (anthropic_answer, anthropic_json),
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
        if behavior.drop:
            self._drop(render(answer), bool(body.get("stream")))
        elif not body.get("stream"):
            self._json(200, render(answer))
        elif self.path == "/v1/chat/completions":
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._sse(chat_stream(answer, include_usage))
        elif anthropic:
            self._sse(anthropic_stream(answer))
        else:
            self._sse(responses_stream(answer))

    def _control(self, action: str, body: dict[str, Any]) -> None:
        state = self.server.state
        with state.lock:
            if action == "behavior":
                state.behavior = Behavior(**body)
            elif action == "usage":
                state.usage = UsageExtras(**body)
            elif action == "tool_rounds":
                state.usage = replace(state.usage, tool_rounds=int(body["rounds"]))
            elif action == "reset":
                state.behavior, state.usage = None, UsageExtras()
                state.counts.clear()
                state.log.clear()
                state.sends.clear()
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

    def _drop(self, payload: dict[str, Any], stream: bool) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if stream else "application/json")
        if not stream:
            self.send_header("content-length", str(len(data)))
        self.end_headers()
        if stream:
            self.wfile.write(b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
                             b'"choices":[{"index":0,"delta":{"content":"half an ans"},"finish_reason":null}]}\n\n')
        else:
            self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

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
        drop: bool = False,
    ) -> None:
        """The next ``times`` API requests (None: all, until reset) wait ``delay`` s, answer ``status``
        (or, with ``drop``, half an answer and a dropped connection)."""
        after = None if retry_after is None else str(retry_after)
        self._post("behavior", asdict(Behavior(status, delay, after, times, drop)))

    def set_usage(
        self, *, cached_tokens: int = 0, cache_write_tokens: int = 0, reasoning_tokens: int = 0,
        padding_tokens: int = 0, model_alias: str = "",
    ) -> None:
        """Report these prompt-cache and reasoning tokens (and ``padding_tokens`` beyond max_tokens) on
        every answer until reset."""
        self._post("usage", asdict(UsageExtras(cached_tokens, cache_write_tokens, reasoning_tokens, padding_tokens,
                                                 model_alias)))

    def set_tool_rounds(self, rounds: int) -> None:
        """With tools offered, answer with a tool call until the conversation holds ``rounds`` tool results."""
        self._post("tool_rounds", {"rounds": rounds})

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

    def stop() -> None:  # killed if a handler still sleeps out a [delay:S] after 10 s
        from tests.services import stop_process

        stop_process(process, timeout=10)

    return LLMServer(line, stop)


if __name__ == "__main__":
    _server = _Server()
    print(f"http://127.0.0.1:{_server.server_address[1]}", flush=True)
    _server.serve_forever()
