"""A raw asyncio OpenAI-compatible chat endpoint that answers from a prebuilt body in well under 0.5 ms.

Why: the tests' server (tests/llm_server.py, a ThreadingHTTPServer) makes the SDK wait about 45 ms per
request, which buries a few milliseconds of wflo overhead in noise. With this one the baseline is the
SDK's own cost and the difference is wflo's. It runs in its own process, so it never competes with
the measured side for the GIL.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def _server_main(port_out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


@contextmanager
def fast_server() -> Iterator[str]:
    """The server's OpenAI ``base_url`` (``http://127.0.0.1:PORT/v1``) while the block runs."""
    ports: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    proc = multiprocessing.Process(target=_server_main, args=(ports,), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}/v1"
    finally:
        proc.kill()
        proc.join(10)
