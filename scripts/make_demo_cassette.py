"""Regenerate the research-agent demo cassette from the pipeline's own prompt builders.

No key and no network: a scripted local server (127.0.0.1) answers each call with a canned answer,
rendered as a provider body by the test server's own renderers (``tests/llm_server_answers.py``), and
the calls go through the real SDK adapters and ``RecordingProvider``, so the cassette holds exactly
what a live recording would. Token counts follow the prompt and answer sizes (about four characters a
token, plus per-message overhead). Run after changing a prompt:

    .venv/bin/python scripts/make_demo_cassette.py
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import triage_cassette  # scripts/triage_cassette.py, next to this file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test server's answers, from tests/

from tests.llm_server_answers import Answer, UsageExtras, anthropic_json, chat_json, tokens
from wflo_core.calls import LLMRequest, LLMResponse, Message
from wflo_core.llm.providers import (
    AnthropicProvider,
    OpenAIProvider,
    RecordingProvider,
    default_cassette_path,
)
from wflo_dagster.pipelines import research_agent as ra

PLAN = (
    "1. Collect published list prices (USD per million output tokens) of leading models for 2023, "
    "2024 and 2025.\n2. Take a representative price per year and compute the ratios between years.\n"
    "3. Explain the drivers of the change (competition, distilled small models, cheaper inference) and "
    "note the caveats of list prices."
)
SEARCH_QUERY = "llm api prices 2023 2024 2025"
NOTES = (
    "- 2023: GPT-4 was listed at $60 per million output tokens.\n"
    "- 2024: GPT-4o at $15/M and GPT-4o-mini at $0.60/M.\n"
    "- 2025: most frontier models cost $8-15/M; small models are under $1/M.\n"
    "- The representative frontier output price fell about 4x by 2024 and about 6x by 2025."
)
CODE = (
    "import json\n\n"
    "prices = {2023: 60.0, 2024: 15.0, 2025: 10.0}\n"
    "ratios = {\n"
    '    "2024_vs_2023": round(prices[2024] / prices[2023], 4),\n'
    '    "2025_vs_2023": round(prices[2025] / prices[2023], 4),\n'
    "}\n"
    "print(json.dumps(ratios))\n"
)
CODE_OUTPUT = '{"2024_vs_2023": 0.25, "2025_vs_2023": 0.1667}'
"""What CODE prints when the pipeline runs it in the sandbox (the summary step quotes it)."""
SUMMARY = (
    "LLM output prices fell steeply between 2023 and 2025: GPT-4 cost $60 per million output tokens in "
    "2023, GPT-4o $15 in 2024, and most frontier models $8-15 in 2025. On representative prices, 2024 "
    "output cost 25% of the 2023 level and 2025 about 17%, a roughly six-fold drop. Small models fell much "
    "further, to under $1 per million tokens, which makes high-volume agent workloads affordable."
)


def prompt_tokens(request: LLMRequest) -> int:
    """The test server's prompt count plus 3 tokens of reply priming, as the shipped cassette has it."""
    return (
        sum(tokens(m.content) + 4 for m in request.messages)
        + sum(tokens(json.dumps(t)) for t in request.tools)
        + 3
    )


def _digest(request: LLMRequest) -> str:
    return hashlib.sha256(json.dumps([m.content for m in request.messages]).encode()).hexdigest()


def openai_body(request: LLMRequest, text: str, tool_call: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat completion answering ``request`` with ``text`` (or a call of ``tool_call``)."""
    digest = _digest(request)
    tool = (f"call_{digest[:24]}", tool_call["name"], tool_call["arguments"]) if tool_call else None
    return chat_json(Answer(
        key=digest[:29], model="gpt-4o-mini-2024-07-18", text=text, tool=tool,
        input_tokens=prompt_tokens(request), output_tokens=tokens(text + json.dumps(tool_call or "")),
        truncated=False, extras=UsageExtras(),
    ))


def anthropic_body(request: LLMRequest, text: str) -> dict[str, Any]:
    """An Anthropic message answering ``request`` with ``text``."""
    return anthropic_json(Answer(
        key=f"01{_digest(request)[:22]}", model="claude-3-5-haiku-20241022", text=text, tool=None,
        input_tokens=prompt_tokens(request), output_tokens=tokens(text), truncated=False, extras=UsageExtras(),
    ))


class ScriptedServer(ThreadingHTTPServer):
    """Answers each POST with the next canned body, whatever the path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: deque[dict[str, Any]] = deque()


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.rfile.read(int(self.headers["content-length"]))
        data = json.dumps(self.server.bodies.popleft()).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    path = default_cassette_path()
    path.unlink(missing_ok=True)
    server = ScriptedServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    providers = {
        "openai": RecordingProvider(OpenAIProvider(api_key="recording", base_url=url + "/v1"), path),
        "anthropic": RecordingProvider(AnthropicProvider(api_key="recording", base_url=url), path),
    }

    def call(
        provider_model: tuple[str, str], messages: list[Message], body: Any, **params: Any
    ) -> LLMResponse:
        provider, model = provider_model
        request = LLMRequest(provider=provider, model=model, messages=tuple(messages), **params)
        server.bodies.append(body(request))
        return providers[provider].complete(request)

    question = ra.QUESTION
    plan = call(
        ra.PLANNER_MODEL,
        ra.plan_messages(question),
        lambda r: openai_body(r, PLAN),
        max_tokens=300,
        temperature=0.0,
    ).text
    tool = {"name": "search_notes", "arguments": json.dumps({"query": SEARCH_QUERY})}
    notes_params = {"max_tokens": 400, "temperature": 0.0, "tools": (ra.SEARCH_TOOL,)}
    first = call(
        ra.PLANNER_MODEL, ra.notes_messages(plan), lambda r: openai_body(r, "", tool), **notes_params
    )
    search_call = first.tool_calls[0]
    followup = ra.notes_followup(plan, search_call, ra.run_search_tool(search_call))
    notes = call(ra.PLANNER_MODEL, followup, lambda r: openai_body(r, NOTES), **notes_params).text
    code = call(
        ra.CODER_MODEL,
        ra.code_messages(plan),
        lambda r: anthropic_body(r, CODE),
        max_tokens=500,
        temperature=0.0,
    ).text
    call(
        ra.PLANNER_MODEL,
        ra.summary_messages(question, notes, code, CODE_OUTPUT),
        lambda r: openai_body(r, SUMMARY),
        max_tokens=300,
        temperature=0.0,
    )
    triage_cassette.record(call, openai_body)

    for provider in providers.values():
        provider.close()
    server.shutdown()
    record_pydantic_ai(path)
    print(f"wrote {len(path.read_text().splitlines())} entries to {path}")


def record_pydantic_ai(path: Path) -> None:
    """The pydantic-ai research agent, recorded through the drop-in client from the test server's answers."""
    import dagster as dg

    from tests import llm_server
    from wflo_dagster.pipelines.pydantic_ai_research import pydantic_ai_answer
    from wflo_dagster.resources.llm import LLMResource

    server = llm_server.start_in_thread()
    try:
        with tempfile.TemporaryDirectory() as home:
            os.environ.update(WFLO_HOME=home, WFLO_LLM_MODE="record", WFLO_CASSETTE_PATH=str(path),
                              WFLO_OPENAI_API_KEY="recording", WFLO_OPENAI_BASE_URL=server.openai_base_url)
            result = dg.materialize([pydantic_ai_answer], resources={"llm": LLMResource()})
            if not result.success:
                raise SystemExit("recording the pydantic-ai research agent failed")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
