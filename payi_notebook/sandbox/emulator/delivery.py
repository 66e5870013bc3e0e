"""Sending a reply: JSON bodies and event streams, with the timing and cut faults applied.

Every stream event goes out as its own ASGI body message, so uvicorn writes it at once
(time to first token is real). A ``cut`` raises ``StreamCut`` inside the body, which makes
uvicorn close the connection without the terminating chunk, exactly like a dropped link.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .faults import Faults, StreamCut

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _CutJSONResponse(Response):
    """Announces the full Content-Length, sends ``cut`` bytes, then drops the connection."""

    def __init__(self, content: bytes, cut: int, headers: Mapping[str, str]) -> None:
        super().__init__(content, headers=headers, media_type="application/json")
        self._cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: self._cut], "more_body": True})
        raise StreamCut(f"JSON body cut after {self._cut} bytes")


def json_response(body: Any, faults: Faults, headers: Mapping[str, str]) -> Response:
    """A JSON reply; with ``cut=N`` only its first N bytes arrive before the connection drops."""
    content = dumps(body).encode()
    if faults.cut is not None:
        return _CutJSONResponse(content, min(faults.cut, len(content) - 1), headers)
    return Response(content, headers=headers, media_type="application/json")


async def _paced(events: Iterable[bytes], faults: Faults) -> AsyncIterator[bytes]:
    """The events, ``interval`` apart; with ``cut=N``, stop after N (always before the last)."""
    iterator = iter(events)
    pending = next(iterator, None)
    sent = 0
    while pending is not None:
        following = next(iterator, None)
        if faults.cut is not None and (sent >= faults.cut or following is None):
            raise StreamCut(f"stream cut after {sent} events")
        if sent and faults.interval:
            await asyncio.sleep(faults.interval)
        yield pending
        sent += 1
        pending = following


def event_stream(
    events: Iterable[bytes],
    faults: Faults,
    headers: Mapping[str, str],
    media_type: str = "text/event-stream; charset=utf-8",
) -> StreamingResponse:
    """An event-stream reply (SSE, or AWS's binary framing) sending each event as its own write."""
    return StreamingResponse(_paced(events, faults), headers={**SSE_HEADERS, **headers}, media_type=media_type)
