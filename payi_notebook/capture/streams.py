"""Response-body wrappers: a tee for event streams (SSE, or AWS's binary event stream) and a
collector for plain bodies.

Both sit where the HTTP library keeps the raw byte stream (``response.stream``), so the
caller's SDK reads through them unchanged. The SSE tee hands each event on as soon as it
is complete (the SDK cannot use half an event anyway) and does nothing else per chunk: the
events passed on are read in batches (every ``READ_EVERY`` events, and when the body ends),
so reading adds nothing to the time to the first token or between tokens. Only an event we
may hide (the usage chunk we asked for on the caller's behalf) is read before it is passed on.
A compressed body is decoded on a copy and passed through untouched. When the body ends, is
closed early, or the response is dropped unread, the exchange is finished exactly once.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..providers import eventstream
from ..providers.sse import SSESplitter, parse_event

if TYPE_CHECKING:
    from .exchange import Exchange

COLLECT_LIMIT = 16 * 1024 * 1024  # a JSON body larger than this is passed on but not parsed
READ_EVERY = 64  # events passed on are read in batches of this many (bounds what is held unread)


def _decompressor(encoding: str | None) -> Any:
    """A zlib decompressor for gzip/deflate; None for identity; False when we cannot decode."""
    if not encoding or encoding == "identity":
        return None
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return False


class _Reader:
    """Shared per-chunk logic of the sync and async wrappers."""

    def __init__(self, inner: Any, exchange: Exchange, framing: str | None, encoding: str | None) -> None:
        """``framing``: "sse", "eventstream" (AWS's binary events) or None (a body read whole)."""
        self._inner = inner
        self._exchange = exchange
        self._decoder = _decompressor(encoding)
        readable = self._decoder is not False
        self._splitter: Any = None
        self._parse = eventstream.as_sse if framing == "eventstream" else parse_event
        if framing and readable:
            self._splitter = eventstream.Splitter() if framing == "eventstream" else SSESplitter()
        self._filter = self._decoder is None  # events may be dropped only when bytes are plain
        self._body: list[bytes] | None = [] if not framing and readable else None
        self._size = 0
        self._unread: list[bytes] = []  # events passed on, not yet read
        self._unread_at = 0.0
        if not readable:
            exchange.report(f"response body is {encoding}-encoded; usage could not be read", None)

    def __del__(self) -> None:
        """Dropped without being read to the end or closed: still record the call."""
        self.catch_up()
        self._exchange.abandon()

    def _decode(self, chunk: bytes) -> bytes:
        return self._decoder.decompress(chunk) if self._decoder else chunk

    def _take(self, chunk: bytes) -> bytes:
        exchange = self._exchange
        now = time.perf_counter()
        if exchange.first_byte_at is None:
            exchange.first_byte_at = now
        try:
            if self._splitter is not None:
                events = self._splitter.split(self._decode(chunk))
                if self._filter and exchange.hiding and any(exchange.adapter.may_hide(raw) for raw in events):
                    self.catch_up()  # in order: what came before is read first
                    kept = [raw for raw in events if exchange.observe_event(self._parse(raw), now)]
                    return kept[0] if len(kept) == 1 else b"".join(kept)
                self._unread += events
                self._unread_at = now
                if len(self._unread) >= READ_EVERY:
                    self.catch_up()
                if not self._filter:
                    return chunk
                return events[0] if len(events) == 1 else b"".join(events)  # an unfinished event waits
            if self._body is not None:
                self._size += len(chunk)
                if self._size <= COLLECT_LIMIT:
                    self._body.append(self._decode(chunk))
                else:
                    self._body = None
        except Exception as exc:  # never break the caller's stream: pass the rest through unparsed
            exchange.report("reading the response body failed", exc)
            held = self._splitter.tail() if self._splitter is not None and self._filter else b""
            self._splitter = self._body = None
            return held + chunk
        return chunk

    def catch_up(self) -> None:
        """Read the events already passed on to the caller (in order)."""
        unread, self._unread = self._unread, []
        try:
            for raw in unread:
                self._exchange.observe_event(self._parse(raw), self._unread_at)
        except Exception as exc:  # the caller already has these bytes; stop reading, keep passing
            self._exchange.report("reading the response stream failed", exc)
            self._splitter = None

    def _finish(self, eof: bool) -> bytes:
        """Finish the exchange; return bytes still held (an incomplete last event)."""
        self.catch_up()
        tail = b""
        if self._splitter is not None:
            tail = self._splitter.tail()
            if not self._filter:
                tail = b""
        body = b"".join(self._body) if self._body is not None else None
        self._exchange.finish_body(body, eof=eof)
        return tail


def stream_classes(lib: ModuleType) -> tuple[type, type]:
    """Sync and async wrapper classes deriving from ``lib``'s byte-stream bases (httpx or httpx2)."""

    class TeeStream(_Reader, lib.SyncByteStream):  # type: ignore[name-defined]
        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                out = self._take(chunk)
                if out:
                    yield out
            tail = self._finish(eof=True)
            if tail:
                yield tail

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._finish(eof=False)

    class AsyncTeeStream(_Reader, lib.AsyncByteStream):  # type: ignore[name-defined]
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._inner:
                out = self._take(chunk)
                if out:
                    yield out
            tail = self._finish(eof=True)
            if tail:
                yield tail

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._finish(eof=False)

    return TeeStream, AsyncTeeStream
