"""Capturing a stream of untrusted output up to a byte cap."""

from __future__ import annotations


class CappedBuffer:
    """Keeps the first ``cap`` bytes written to it and remembers whether more came."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.truncated = False
        self._chunks: list[bytes] = []
        self._size = 0

    def write(self, chunk: bytes) -> bool:
        """Append ``chunk``; True once the stream has gone over the cap."""
        room = self.cap - self._size
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)
        return self.truncated

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)
