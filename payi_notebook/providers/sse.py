"""Incremental server-sent-events splitter that keeps each event's raw bytes.

The tee passes events through byte for byte (or drops one, such as a usage chunk the
caller did not ask for), so it needs both the raw segment and the parsed fields.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class SSEEvent(NamedTuple):
    raw: bytes  # the event including its terminating blank line
    event: str | None  # the ``event:`` field, if any
    data: str  # the ``data:`` lines joined with newlines ("" when there were none)


def parse_event(raw: bytes) -> SSEEvent:
    name: str | None = None
    data: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    return SSEEvent(raw, name, "\n".join(data))


class SSESplitter:
    """Feed bytes in, get complete events out; an incomplete tail waits for more bytes."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def split(self, chunk: bytes) -> list[bytes]:
        """The complete events ``chunk`` finishes, as raw bytes (parse them with ``parse_event``)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[bytes] = []
        start = 0
        while match := _BOUNDARY.search(buffer, start):
            end = match.end()
            events.append(buffer[start:end])
            start = end
        self._buffer = buffer[start:]
        return events

    def tail(self) -> bytes:
        """Bytes after the last complete event (a stream cut mid-event leaves some)."""
        tail, self._buffer = self._buffer, b""
        return tail
