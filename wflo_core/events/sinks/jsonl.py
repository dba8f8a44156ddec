"""The embedded default sink: one CloudEvent per line in ``WFLO_HOME/events.jsonl``.

Several processes (parallel Dagster steps, the relay) may append at once. Each batch is written
with one ``write`` on an ``O_APPEND`` descriptor while holding an exclusive ``flock``, so lines
never interleave or tear, and readers only ever see whole lines once the lock is released.
All topics share the file; dead-letter records are told apart by their ``type``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

from wflo_core.events.sinks.base import Delivery, OutboundMessage

DEFAULT_MAX_LINE_BYTES = 1_000_000
"""Same default as Kafka's ``message.max.bytes``, so both sinks refuse the same events."""


class JsonlEventSink:
    """Appends events to a JSON Lines file, safe for concurrent writers across processes."""

    def __init__(
        self, path: Path | str, *, fsync: bool = True, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.max_line_bytes = max_line_bytes

    def deliver(self, messages: Sequence[OutboundMessage]) -> list[Delivery]:
        results: list[Delivery] = []
        lines: list[bytes] = []
        for m in messages:
            if b"\n" in m.value or b"\r" in m.value:
                results.append(Delivery(m.event_id, "payload contains a line break", permanent=True))
            elif len(m.value) > self.max_line_bytes:
                results.append(
                    Delivery(
                        m.event_id,
                        f"message of {len(m.value)} bytes exceeds the {self.max_line_bytes}-byte limit",
                        permanent=True,
                    )
                )
            else:
                lines.append(m.value + b"\n")
                results.append(Delivery(m.event_id))
        if lines:
            try:
                self._append(b"".join(lines))
            except OSError as err:
                reason = f"cannot append to {self.path}: {err.strerror or err}"
                return [r if not r.ok else Delivery(r.event_id, reason) for r in results]
        return results

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def close(self) -> None:
        return None
