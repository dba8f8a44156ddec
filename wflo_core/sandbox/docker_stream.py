"""Reading what a container's runner sends back, without trusting any of it.

The attach stream carries Docker's own frames (8-byte header: stream, size); the runner's stdout
inside them carries its frames (:mod:`wflo_core.sandbox.container_runner`). Every size is capped
here again: the job's output at ``max_output_bytes`` per stream, files at ``max_files_out_bytes``
in total with their names checked, the report at 64 KiB. A runner that breaks the format, floods,
or overruns the deadline gets its container killed by the caller.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wflo_core.errors import ConfigError
from wflo_core.sandbox.files import safe_relative_path
from wflo_core.sandbox.output import CappedBuffer
from wflo_core.sandbox.policy import SandboxLimits
from wflo_core.sandbox.result import KilledReason

_DOCKER_HEADER = struct.Struct(">BxxxI")
_FRAME = struct.Struct(">cI")
READY = b"R"
#: What an idle runner sends first: its ready frame inside one Docker stdout frame.
_READY_BYTES = _DOCKER_HEADER.pack(1, _FRAME.size) + _FRAME.pack(READY, 0)
_MAX_CHUNK = 1 << 20
_MAX_REPORT = 64 * 1024
#: How long the stream may stay silent before the container's state is checked (it may have died).
_POLL_SECONDS = 0.5


@dataclass
class RunnerOutput:
    """Everything one run sent back, each part already capped."""

    stdout: CappedBuffer
    stderr: CappedBuffer
    files: dict[str, bytes] = field(default_factory=dict)
    files_truncated: bool = False
    report: dict[str, Any] | None = None
    #: Set when the caller must kill the container: deadline overrun or a broken/flooding stream.
    host_killed: KilledReason | None = None
    #: The runner's own stderr (its errors, never the job's), for diagnostics.
    runner_errors: CappedBuffer = field(default_factory=lambda: CappedBuffer(4096))

    def report_flag(self, key: str) -> bool:
        return self.report is not None and self.report.get(key) is True

    def report_count(self, key: str) -> int | None:
        value = self.report.get(key) if self.report else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read_runner_output(
    sock: socket.socket, limits: SandboxLimits, *, deadline: float, ended: Callable[[], bool]
) -> RunnerOutput:
    """Read until the runner's report, the end of the stream, or ``deadline``."""
    out = RunnerOutput(CappedBuffer(limits.max_output_bytes), CappedBuffer(limits.max_output_bytes))
    parser = _Frames(out, limits)
    raw = bytearray()
    while out.report is None and out.host_killed is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            out.host_killed = KilledReason.TIMEOUT
            break
        sock.settimeout(min(remaining, _POLL_SECONDS))
        try:
            chunk = sock.recv(1 << 18)
        except TimeoutError:
            if ended():
                break
            continue
        except OSError:
            break
        if not chunk:
            break
        raw += chunk
        while len(raw) >= _DOCKER_HEADER.size:
            stream, size = _DOCKER_HEADER.unpack_from(raw)
            if len(raw) < _DOCKER_HEADER.size + size:
                break
            payload = bytes(raw[_DOCKER_HEADER.size : _DOCKER_HEADER.size + size])
            del raw[: _DOCKER_HEADER.size + size]
            if stream == 1:
                parser.feed(payload)
            elif stream == 2:
                out.runner_errors.write(payload)
    return out


def wait_until_ready(sock: socket.socket, timeout: float) -> bool:
    """Whether the runner said it is ready within ``timeout`` (used before pooling a container)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while len(received) < len(_READY_BYTES):
            chunk = sock.recv(len(_READY_BYTES) - len(received))
            if not chunk:
                return False
            received += chunk
    except OSError:
        return False
    return received == _READY_BYTES


class _Frames:
    """Incremental parser of the runner's frames into a :class:`RunnerOutput`."""

    def __init__(self, out: RunnerOutput, limits: SandboxLimits) -> None:
        self.out = out
        self.files_budget = limits.max_files_out_bytes
        self.max_size = {
            READY: 0,
            b"o": _MAX_CHUNK,
            b"e": _MAX_CHUNK,
            b"f": limits.max_files_out_bytes + 8192,
            b"r": _MAX_REPORT,
        }
        self.pending = bytearray()

    def feed(self, data: bytes) -> None:
        self.pending += data
        while self.out.host_killed is None and len(self.pending) >= _FRAME.size:
            kind, size = _FRAME.unpack_from(self.pending)
            if size > self.max_size.get(kind, -1):
                self.out.host_killed = KilledReason.CONTAINER_DIED  # not our runner's format
                return
            if len(self.pending) < _FRAME.size + size:
                return
            payload = bytes(self.pending[_FRAME.size : _FRAME.size + size])
            del self.pending[: _FRAME.size + size]
            self._take(kind, payload)

    def _take(self, kind: bytes, payload: bytes) -> None:
        out = self.out
        if kind in (b"o", b"e"):
            if (out.stdout if kind == b"o" else out.stderr).write(payload):
                out.host_killed = KilledReason.OUTPUT_LIMIT  # the runner should have stopped first
        elif kind == b"f":
            self._file(payload)
        elif kind == READY:
            pass
        else:
            try:
                report = json.loads(payload)
            except ValueError:
                report = None
            if isinstance(report, dict):
                out.report = report
            else:
                out.host_killed = KilledReason.CONTAINER_DIED

    def _file(self, payload: bytes) -> None:
        if len(payload) < 4:
            return
        (name_size,) = struct.unpack_from(">I", payload)
        try:
            name = safe_relative_path(payload[4 : 4 + name_size].decode())
        except (UnicodeDecodeError, ConfigError):
            return
        content = payload[4 + name_size :]
        if len(content) > self.files_budget:
            self.out.files_truncated = True
            return
        self.files_budget -= len(content)
        self.out.files[name] = content
