"""AWS event-stream framing (``application/vnd.amazon.eventstream``): split, read, write.

Bedrock's streaming operations answer in this binary framing. Each message is a prelude
(total length, headers length, CRC32 of the two), typed headers (``:event-type``,
``:message-type``, ...), a payload (JSON for Bedrock) and a CRC32 of everything before it.
Capture splits the bytes the caller's SDK reads into messages and reads them afterwards
(the SDK checks the CRCs; we do not pay for that twice); the emulator and the sandbox write
them. Only the header types Bedrock uses are decoded; the others are skipped by length.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import NamedTuple

from .sse import SSEEvent

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_STRING, _BYTES = 7, 6
# fixed value sizes of the other header types: bool true/false, byte, short, int, long, timestamp, uuid
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
MAX_MESSAGE = 16 * 1024 * 1024  # the framing's own limit


class Message(NamedTuple):
    """One decoded message: string headers by name, and the raw payload."""

    headers: dict[str, str]
    payload: bytes

    @property
    def event_type(self) -> str | None:
        """``:event-type`` for events, ``:exception-type`` for modelled errors in the stream."""
        return self.headers.get(":event-type") or self.headers.get(":exception-type")

    @property
    def is_error(self) -> bool:
        return self.headers.get(":message-type", "event") != "event"


def encode(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers (what Bedrock sends)."""
    head = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        head += bytes((len(raw_name),)) + raw_name + bytes((_STRING,)) + _U16.pack(len(raw_value)) + raw_value
    prelude = _PRELUDE.pack(12 + len(head) + len(payload) + 4, len(head))
    message = prelude + _U32.pack(zlib.crc32(prelude)) + bytes(head) + payload
    return message + _U32.pack(zlib.crc32(message))


def event(event_type: str, payload: bytes) -> bytes:
    """A JSON event message, headers as Bedrock sets them."""
    return encode(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


def exception(exception_type: str, payload: bytes) -> bytes:
    """A modelled error inside a stream (``throttlingException``, ``internalServerException``, ...)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode(headers, payload)


def decode(raw: bytes) -> Message:
    """A complete message's headers and payload (CRCs are the SDK's business)."""
    total, head_length = _PRELUDE.unpack_from(raw)
    headers: dict[str, str] = {}
    at, end = 12, 12 + head_length
    while at < end:
        size = raw[at]
        name = raw[at + 1 : at + 1 + size].decode("utf-8", "replace")
        at += 1 + size
        kind = raw[at]
        at += 1
        if kind in (_STRING, _BYTES):
            (length,) = _U16.unpack_from(raw, at)
            value = raw[at + 2 : at + 2 + length]
            at += 2 + length
            if kind == _STRING:
                headers[name] = value.decode("utf-8", "replace")
        else:
            at += _FIXED.get(kind, 0)
    return Message(headers, raw[end : total - 4])


def as_sse(raw: bytes) -> SSEEvent:
    """A message in the shape the stream adapters read: the event type (``error:<type>`` for an
    exception message) and the payload as text."""
    message = decode(raw)
    name = message.event_type
    if message.is_error:
        name = f"error:{name}"
    return SSEEvent(raw, name, message.payload.decode("utf-8", "replace"))


class Splitter:
    """Feed bytes in, get complete messages' raw bytes out; a partial message waits for more."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def split(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        messages: list[bytes] = []
        start = 0
        while len(buffer) - start >= 12:
            (total,) = _U32.unpack_from(buffer, start)
            if not 16 <= total <= MAX_MESSAGE:
                raise ValueError(f"not an AWS event stream (message length {total})")
            if len(buffer) - start < total:
                break
            messages.append(buffer[start : start + total])
            start += total
        self._buffer = buffer[start:]
        return messages

    def tail(self) -> bytes:
        """Bytes of an unfinished message (a stream cut mid-message leaves some)."""
        tail, self._buffer = self._buffer, b""
        return tail
