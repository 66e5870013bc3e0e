"""The hook on ``aiohttp.ClientSession._request``: google-genai's async path whenever aiohttp is importable.

With aiohttp installed, ``client.aio.models.*`` never touches httpx2, so this is the only
place those calls can be seen. A matched request is mirrored into an ``httpx2.Request`` so
that ``Exchange`` reads, re-addresses (proxy mode) and times it exactly as it does the
httpx ones; what goes out is that request's URL, headers and body. The response body is
observed through a thin wrapper around ``response.content`` that passes every byte on
unchanged (nothing is hidden on this path) and finishes the exchange at end of body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..tracking import scope_var
from .exchange import CaptureConfig, Exchange
from .streams import _Reader

log = logging.getLogger(__name__)
_current = scope_var()

_DROPPED = frozenset({"host", "content-length", "transfer-encoding"})  # aiohttp sets these itself


class _Reader4aiohttp(_Reader):
    """The shared tee logic, in pass-through mode: bytes go on untouched, events are read after."""

    def __init__(self, exchange: Exchange, sse: bool) -> None:
        super().__init__(None, exchange, "sse" if sse else None, None)  # aiohttp has already decompressed the body
        self._filter = False

    def seen(self, data: bytes, at_eof: bool) -> None:
        try:
            if data:
                self._take(data)
            if at_eof or not data:
                self._finish(eof=True)
        except Exception as exc:  # never break the caller's read
            self._exchange.report("reading an aiohttp response failed", exc)


class _TeeContent:
    """Stands in for ``ClientResponse.content`` (an ``aiohttp.StreamReader``); every read goes through."""

    def __init__(self, inner: Any, reader: _Reader4aiohttp) -> None:
        self._inner = inner
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _seen(self, data: bytes) -> bytes:
        self._reader.seen(data, self._inner.at_eof())
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._seen(await self._inner.read(n))

    async def readany(self) -> bytes:
        return self._seen(await self._inner.readany())

    async def readline(self, **kwargs: Any) -> bytes:
        return self._seen(await self._inner.readline(**kwargs))

    async def readuntil(self, separator: bytes = b"\n", **kwargs: Any) -> bytes:
        return self._seen(await self._inner.readuntil(separator, **kwargs))

    async def readexactly(self, n: int) -> bytes:
        return self._seen(await self._inner.readexactly(n))

    async def readchunk(self) -> tuple[bytes, bool]:
        data, end = await self._inner.readchunk()
        self._seen(data)
        return data, end

    def read_nowait(self, n: int = -1) -> bytes:
        return self._seen(self._inner.read_nowait(n))

    def iter_any(self) -> Any:
        return _Iterator(self.readany)

    def iter_chunked(self, n: int) -> Any:
        return _Iterator(lambda: self.read(n))

    def __aiter__(self) -> Any:
        return _Iterator(self.readline)


class _Iterator:
    """``async for`` over a read function until it returns b"" (as aiohttp's own iterators do)."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read = read

    def __aiter__(self) -> _Iterator:
        return self

    async def __anext__(self) -> bytes:
        data = await self._read()
        if not data:
            raise StopAsyncIteration
        return data


def _outgoing(request: Any) -> list[tuple[str, str]]:
    return [(name, value) for name, value in request.headers.multi_items() if name.lower() not in _DROPPED]


def aiohttp_hook(
    original: Callable[..., Any], begin: Callable[[Any], tuple[CaptureConfig, Any, Any] | None]
) -> Callable[..., Any]:
    """The replacement for ``ClientSession._request``; ``begin`` is the httpx hooks' own gate."""
    import httpx2
    from yarl import URL

    async def _request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        if _current.get() is None:  # outside a tracking scope: one context-variable read
            return await original(self, method, str_or_url, **kwargs)
        data = kwargs.get("data")
        if "json" in kwargs or not (data is None or isinstance(data, (bytes, bytearray, str))):
            return await original(self, method, str_or_url, **kwargs)  # not a body google-genai sends
        try:
            url = str_or_url if isinstance(str_or_url, URL) else URL(str(str_or_url))
            target = begin(_Peek(url))
        except Exception:  # no capture config to report to yet: the log says why the call went uncaptured
            log.exception("payi_notebook: matching an aiohttp call failed; it was sent uncaptured")
            target = None
        if target is None:
            return await original(self, method, str_or_url, **kwargs)
        config, scope, route = target
        try:
            body = data.encode() if isinstance(data, str) else bytes(data or b"")
            request = httpx2.Request(method, str(url), headers=_headers(kwargs.get("headers")), content=body)
            exchange = Exchange(config, scope, route, request)
            kwargs["headers"] = _outgoing(request)
            kwargs["data"] = request.content
            str_or_url = URL(str(request.url), encoded=True)
        except Exception as exc:
            config.report("preparing capture failed; the call was sent uncaptured", exc)
            return await original(self, method, str_or_url, **kwargs)
        try:
            response = await original(self, method, str_or_url, **kwargs)
        except BaseException as exc:
            exchange.fail(exc)
            raise
        try:
            exchange.status_code = response.status
            exchange.headers = list(response.headers.items())
            sse = "text/event-stream" in response.headers.get("content-type", "")
            response.content = _TeeContent(response.content, _Reader4aiohttp(exchange, sse))
        except Exception as exc:
            config.report("reading the response failed", exc)
        return response

    _request.__payi_original__ = original  # type: ignore[attr-defined]
    return _request


def _headers(headers: Any) -> list[tuple[str, str]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(name), str(value)) for name, value in items]


class _Peek:
    """Just enough of a request for the route match (``url.scheme/host/port/raw_path``)."""

    __slots__ = ("url",)

    def __init__(self, url: Any) -> None:
        self.url = _PeekURL(url)


class _PeekURL:
    __slots__ = ("scheme", "host", "port", "raw_path")

    def __init__(self, url: Any) -> None:
        self.scheme, self.host, self.port = url.scheme, url.host or "", url.explicit_port
        self.raw_path = url.raw_path.encode("ascii")  # as sent, like httpx's (routes match encoded paths)
