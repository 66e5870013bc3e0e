"""Pay-i's proxy routes (OpenAI, Anthropic, Azure OpenAI, Azure Anthropic, Vertex): block, forward, price, record, annotate.

A proxied call is checked against its Block limits first (refused calls never reach the
provider), then forwarded with the caller's provider credentials through one pooled
``httpx.AsyncClient``. The provider's answer comes back unchanged except for ``xproxy_result``:
a top-level member of a JSON body, or of the final event of a stream. Streams are relayed
chunk by chunk, never buffered whole; a cut stream is recorded with the usage seen so far.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from payi_notebook.units import units_for

from . import attribution, errors, spec
from .proxy_routes import APIS, ProviderApi
from .record import Event, Recorder, utc_now
from .sse import splice

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
}
RESPONSE_DROP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "date",
    "server",
}
FORWARD_PREFIX = "xproxy-forward-"
UPSTREAM_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
ResourceOf = Callable[[Any], Any]  # answered model -> the resource to price


def forward_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Caller headers for the provider: credentials and the rest pass, ``xProxy-*`` and hop-by-hop do not.

    ``xProxy-Forward-<Name>`` goes on as ``<Name>``.
    """
    kept = []
    for name, value in raw:
        lower = name.decode("latin-1").lower()
        if lower.startswith(FORWARD_PREFIX):
            kept.append((name[len(FORWARD_PREFIX) :], value))
        elif not lower.startswith("xproxy-") and lower not in HOP_BY_HOP:
            kept.append((name, value))
    kept.append((b"accept-encoding", b"identity"))
    return kept


def reply_headers(upstream: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in upstream.headers.items() if name.lower() not in RESPONSE_DROP}


def _upstream_base(header: str | None, default: str) -> str:
    if not header:
        return default
    parts = urlsplit(header.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.bad_request(
            errors.INVALID_PROVIDER_URI,
            f"xProxy-Provider-BaseUri: {header!r} is not an absolute http(s) URI like https://api.provider.com",
        )
    return header.strip().rstrip("/")


class UpstreamCut(Exception):
    """The provider's stream broke off; the client's stream is broken off the same way."""


class _HideUpstreamCuts(logging.Filter):
    """uvicorn logs every exception that ends a response; a relayed cut is not a sandbox error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UpstreamCut))


_CUT_FILTER = _HideUpstreamCuts()


class RelayResponse(StreamingResponse):
    """A relayed stream that stops as soon as the client goes away, and breaks off when upstream does.

    On a disconnect the relay generator is closed at once, so it records the usage seen so far
    and releases the upstream connection instead of reading a stream nobody will get.
    """

    body_iterator: AsyncGenerator[bytes, None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut = False
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    nonlocal cut
                    try:
                        await self.stream_response(send)
                    except UpstreamCut:
                        cut = True
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
        if cut:
            raise UpstreamCut("the provider's stream broke off")


class Proxy:
    """The proxy routes; ``upstream`` is the default provider base URL (the emulator)."""

    def __init__(self, recorder: Recorder, upstream: str) -> None:
        uvicorn_log = logging.getLogger("uvicorn.error")
        if _CUT_FILTER not in uvicorn_log.filters:
            uvicorn_log.addFilter(_CUT_FILTER)
        self.recorder = recorder
        self.upstream = upstream.rstrip("/")
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """One pooled client, created on first use inside the serving event loop."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=UPSTREAM_TIMEOUT,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def routes(self) -> list[Route]:
        return [Route(path, self._endpoint(path, api), methods=["POST"]) for path, api in APIS.items()]

    def _endpoint(self, path: str, api: ProviderApi) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self.handle(request, path, api)

        return endpoint

    async def handle(self, request: Request, path: str, api: ProviderApi) -> Response:
        started = time.perf_counter()
        headers = request.headers
        spec.check_headers(path, "post", headers)
        who = attribution.from_headers(headers, proxy=True)
        who.check()
        base = _upstream_base(headers.get("xproxy-provider-baseuri"), self.upstream + api.default_suffix)
        raw = await request.body()
        body = spec.parse_json(raw)
        if not isinstance(body, dict):
            raise errors.bad_request(errors.INVALID_JSON, "request body must be a JSON object (the provider's request)")
        streaming = body.get("stream") is True or api.stream
        params = dict(request.path_params)
        priced_as = headers.get("xproxy-priceas-resource")

        def resource_of(answered: Any) -> Any:
            return priced_as or api.resource(params, body, answered if isinstance(answered, str) else None)

        template = Event(
            source="proxy",
            category=headers.get("xproxy-priceas-category") or api.category,
            resource=resource_of(None),
            units={},
            event_timestamp=utc_now(),
            attribution=who,
            details={"provider_uri": base, "operation": api.operation, "streaming": streaming},
        )
        self.recorder.admit(template)
        if streaming and api.operation == "chat":
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            raw = json.dumps(body, separators=(",", ":")).encode()
        query = request.url.query
        url = base + request.url.path[len(api.prefix) :] + (f"?{query}" if query else "")
        outgoing = self.client.build_request("POST", url, headers=forward_headers(request.headers.raw), content=raw)
        try:
            upstream = await self.client.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            raise errors.PayiError(
                502, errors.PROVIDER_ERROR, f"cannot reach the provider at {base}: {type(exc).__name__}"
            ) from None
        if upstream.status_code >= 400:
            return await self._provider_error(upstream, template, api, started, resource_of)
        if streaming and upstream.headers.get("content-type", "").startswith("text/event-stream"):
            return RelayResponse(
                self._relay(upstream, template, api, started, resource_of),
                status_code=upstream.status_code,
                headers=reply_headers(upstream),
            )
        return await self._json(upstream, template, api, started, resource_of)

    def _record(
        self,
        template: Event,
        api: ProviderApi,
        status: int,
        usage: Any,
        response_id: Any,
        model: Any,
        resource_of: ResourceOf,
        **details: Any,
    ) -> dict[str, Any]:
        event = replace(
            template,
            http_status_code=status,
            units=units_for(api.wire, usage if isinstance(usage, dict) else None),
            provider_response_id=response_id if isinstance(response_id, str) and response_id else None,
            resource=resource_of(model) or template.resource,
            details={**template.details, **details},
        )
        return self.recorder.record(event).xproxy_result

    async def _json(
        self, upstream: httpx.Response, template: Event, api: ProviderApi, started: float, resource_of: ResourceOf
    ) -> Response:
        content = await upstream.aread()
        await upstream.aclose()
        try:
            payload = json.loads(content)
        except ValueError:
            payload = None
        latency = round((time.perf_counter() - started) * 1000)
        status = upstream.status_code
        if not isinstance(payload, dict):
            self._record(template, api, status, None, None, None, resource_of, end_to_end_latency_ms=latency)
            return Response(content, status_code=status, headers=reply_headers(upstream))
        usage, response_id, model = api.read(payload)
        result = self._record(
            template, api, status, usage, response_id, model, resource_of, end_to_end_latency_ms=latency
        )
        return Response(splice(content, "xproxy_result", result), status_code=status, headers=reply_headers(upstream))

    async def _provider_error(
        self, upstream: httpx.Response, template: Event, api: ProviderApi, started: float, resource_of: ResourceOf
    ) -> Response:
        """The provider's error, its status and headers kept, with Pay-i's fields beside its body."""
        content = await upstream.aread()
        await upstream.aclose()
        status = upstream.status_code
        failed = replace(template, failed=True)
        latency = round((time.perf_counter() - started) * 1000)
        result = self._record(failed, api, status, None, None, None, resource_of, end_to_end_latency_ms=latency)
        try:
            payload = json.loads(content)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return Response(content, status_code=status, headers=reply_headers(upstream))
        error = {"code": errors.PROVIDER_ERROR, "message": f"the provider answered HTTP {status}"}
        content = splice(splice(content, "xproxy_error", error), "xproxy_result", result)
        return Response(content, status_code=status, headers=reply_headers(upstream))

    async def _relay(
        self, upstream: httpx.Response, template: Event, api: ProviderApi, started: float, resource_of: ResourceOf
    ) -> AsyncGenerator[bytes, None]:
        """Relay SSE events as they arrive; stamp the final one; record even if the stream is cut."""
        tracker = api.tracker()
        first_token_ms: int | None = None

        def record(**timing: Any) -> dict[str, Any]:
            return self._record(
                template,
                api,
                upstream.status_code,
                tracker.usage,
                tracker.provider_response_id,
                tracker.model,
                resource_of,
                time_to_first_token_ms=first_token_ms,
                **timing,
            )

        def stamp() -> dict[str, Any]:
            return record(end_to_end_latency_ms=round((time.perf_counter() - started) * 1000))

        pending = b""
        cut = False
        try:
            async for chunk in upstream.aiter_bytes():
                if first_token_ms is None:
                    first_token_ms = round((time.perf_counter() - started) * 1000)
                pending += chunk
                out = []
                while True:
                    end = _event_end(pending)
                    if end < 0:
                        break
                    event, pending = pending[:end], pending[end:]
                    out.append(event if tracker.finished else tracker.feed(event, stamp))
                if out:
                    yield b"".join(out)
            if pending.strip():
                yield pending if tracker.finished else tracker.feed(pending, stamp)
        except httpx.HTTPError:
            cut = True
        finally:
            if not tracker.finished:
                tracker.finished = True
                record(stream_cut=True)
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
        if cut:
            raise UpstreamCut("the provider's stream broke off")


def _event_end(buffer: bytes) -> int:
    """Index just past the first complete SSE event in ``buffer`` (-1 if none yet)."""
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := buffer.find(sep)) >= 0]
    return min(ends) if ends else -1
