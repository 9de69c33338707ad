"""Server-sent events: an incremental decoder for upstream streams, and the encoder we send.

The decoder is fed raw bytes split anywhere (mid-line, mid-UTF-8 character, between CR and
LF) and returns complete events' ``data`` payloads; it is tested alone with awkward splits.
"""

from __future__ import annotations

import codecs

__all__ = ["DONE", "LineDecoder", "SSEDecoder", "comment", "encode"]

DONE = b"data: [DONE]\n\n"


def encode(payload: bytes) -> bytes:
    """One SSE event carrying a JSON payload (which never contains a newline)."""
    return b"data: " + payload + b"\n\n"


def comment(text: str = "keepalive") -> bytes:
    """An SSE comment: clients ignore it, proxies and timers see traffic."""
    return b": " + text.encode() + b"\n\n"


class LineDecoder:
    """Bytes in, complete text lines out; accepts ``\\n``, ``\\r\\n`` and ``\\r``."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._started = False

    def feed(self, chunk: bytes) -> list[str]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the stream
        if self._pending_cr:
            # The previous chunk ended with CR; a leading LF belongs to that line break.
            if text.startswith("\n"):
                text = text[1:]
            self._pending_cr = False
        if not text:
            return []
        if text.endswith("\r"):
            self._pending_cr = True
        text = self._buffer + text
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop()
        return lines

    def flush(self) -> list[str]:
        text = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        return [text] if text else []


class SSEDecoder:
    """Bytes in, the ``data`` of each complete event out (multi-line data joined by \\n)."""

    def __init__(self) -> None:
        self._lines = LineDecoder()
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        return self._consume(self._lines.feed(chunk))

    def flush(self) -> list[str]:
        events = self._consume(self._lines.flush())
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _consume(self, lines: list[str]) -> list[str]:
        events: list[str] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                self._data.append(value)
        return events
