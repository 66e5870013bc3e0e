"""Pay-i's Bedrock proxy routes: ``/api/v1/proxy/aws.bedrock/model/{modelId}/<operation>``.

Block limits are checked first, as on the other proxy routes; the call is then forwarded to
``xProxy-Provider-BaseUri`` (default: the emulator) with the caller's SigV4 headers as they
were signed, on the path as it was signed (the model id keeps its percent-encoding).
Usage is read the way capture reads it (one reader per operation, ``providers.bedrock``):
Converse and InvokeModel JSON get ``xproxy_result`` as a top-level member; binary event
streams are relayed message by message, and the message that completes the usage (the
``metadata`` event, or the chunk with ``amazon-bedrock-invocationMetrics``) gets it inside
its JSON (inside the chunk's base64 bytes for invoke streams), re-framed with fresh CRCs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payi_notebook.providers import Observation, endpoint_for, eventstream
from payi_notebook.providers import bedrock as readers

from . import attribution, errors, spec
from .proxy import (
    ProviderApi,
    Proxy,
    RelayResponse,
    UpstreamCut,
    _upstream_base,
    forward_headers,
    reply_headers,
)
from .record import Event, utc_now
from .sse import ChatTracker, splice

BEDROCK = readers.PROVIDER
CATEGORY = BEDROCK.category
PROXY_PREFIX: str = BEDROCK.proxy_prefix  # type: ignore[assignment]
MODEL_OPERATIONS = readers.MODEL_OPERATIONS


def _as_given(answered: Any) -> None:
    """The resource stays the model id of the path, as given (ARNs and inference profiles too)."""
    return None


def _spec_path(operation: str) -> str:
    return f"{PROXY_PREFIX}/model/{{modelId}}/{operation}"


class BedrockProxy:
    """The four Bedrock routes, sharing the other routes' recorder, upstream and HTTP client."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        # _record and _provider_error take a ProviderApi; Bedrock's usage shapes all map via units_for("bedrock")
        self.apis = {op: ProviderApi(PROXY_PREFIX, CATEGORY, op, "bedrock", ChatTracker) for op in MODEL_OPERATIONS}

    def routes(self) -> list[Route]:
        return [
            Route(
                f"{PROXY_PREFIX}/model/{{model_id:path}}/{op}",
                self._endpoint(op),
                methods=["POST"],
            )
            for op in MODEL_OPERATIONS
        ]

    def _endpoint(self, operation: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self.handle(request, operation)

        return endpoint

    async def handle(self, request: Request, operation: str) -> Response:
        started = time.perf_counter()
        headers = request.headers
        spec.check_headers(_spec_path(operation), "post", headers)
        who = attribution.from_headers(headers, proxy=True)
        who.check()
        base = _upstream_base(headers.get("xproxy-provider-baseuri"), self.proxy.upstream)
        raw = await request.body()
        model = request.path_params["model_id"]
        streaming = operation.endswith("stream")
        template = Event(
            source="proxy",
            category=headers.get("xproxy-priceas-category") or CATEGORY,
            resource=headers.get("xproxy-priceas-resource") or model,
            units={},
            event_timestamp=utc_now(),
            attribution=who,
            details={
                "provider_uri": base,
                "operation": operation,
                "streaming": streaming,
            },
        )
        self.proxy.recorder.admit(template)
        signed_path = request.scope.get("raw_path", request.url.path.encode()).decode("ascii").split("?", 1)[0]
        query = request.url.query
        url = base + signed_path[len(PROXY_PREFIX) :] + (f"?{query}" if query else "")
        client = self.proxy.client
        outgoing = client.build_request("POST", url, headers=forward_headers(request.headers.raw), content=raw)
        try:
            upstream = await client.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            raise errors.PayiError(
                502,
                errors.PROVIDER_ERROR,
                f"cannot reach the provider at {base}: {type(exc).__name__}",
            ) from None
        api = self.apis[operation]
        if upstream.status_code >= 400:
            return await self.proxy._provider_error(upstream, template, api, started, _as_given)
        if eventstream.CONTENT_TYPE in upstream.headers.get("content-type", ""):
            return RelayResponse(
                self._relay(upstream, template, api, started),
                status_code=upstream.status_code,
                headers=reply_headers(upstream),
            )
        return await self._json(upstream, template, api, started)

    async def _json(
        self,
        upstream: httpx.Response,
        template: Event,
        api: ProviderApi,
        started: float,
    ) -> Response:
        content = await upstream.aread()
        await upstream.aclose()
        obs = Observation()
        reader = endpoint_for(BEDROCK.name, api.operation).adapter()
        reader.read_headers(obs, upstream.headers)
        try:
            reader.read_json(obs, json.loads(content))
        except ValueError:
            pass
        result = self.proxy._record(
            template,
            api,
            upstream.status_code,
            obs.usage,
            obs.response_id,
            None,
            _as_given,
            end_to_end_latency_ms=round((time.perf_counter() - started) * 1000),
        )
        if not content.strip().startswith(b"{"):
            return Response(
                content,
                status_code=upstream.status_code,
                headers=reply_headers(upstream),
            )
        return Response(
            splice(content, "xproxy_result", result),
            status_code=upstream.status_code,
            headers=reply_headers(upstream),
        )

    async def _relay(
        self,
        upstream: httpx.Response,
        template: Event,
        api: ProviderApi,
        started: float,
    ) -> AsyncGenerator[bytes, None]:
        """Relay event-stream messages as they complete; stamp the one that completes the usage."""
        obs = Observation()
        reader = endpoint_for(BEDROCK.name, api.operation).adapter()
        splitter = eventstream.Splitter()
        first_token_ms: int | None = None
        stamped = cut = False

        def record(**details: Any) -> dict[str, Any]:
            reader.read_headers(obs, upstream.headers)  # as capture does, once the events are read
            usage = obs.usage if obs.complete else readers.partial_usage(obs.usage, obs.deltas)
            event = template if obs.complete else replace(template, details={**template.details, "stream_cut": True})
            return self.proxy._record(
                event,
                api,
                upstream.status_code,
                usage,
                obs.response_id,
                None,
                _as_given,
                **details,
            )

        try:
            async for chunk in upstream.aiter_bytes():
                if first_token_ms is None:
                    first_token_ms = round((time.perf_counter() - started) * 1000)
                out = []
                for raw in splitter.split(chunk):
                    if not stamped:
                        reader.read_event(obs, eventstream.as_sse(raw), False, time.perf_counter())
                        if obs.complete:
                            stamped = True
                            result = record(
                                time_to_first_token_ms=first_token_ms,
                                end_to_end_latency_ms=round((time.perf_counter() - started) * 1000),
                            )
                            raw = _stamp(raw, result)
                    out.append(raw)
                if out:
                    yield b"".join(out)
            if tail := splitter.tail():
                yield tail
        except httpx.HTTPError:
            cut = True
        finally:
            if not stamped:
                stamped = True
                record(time_to_first_token_ms=first_token_ms)
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
        if cut:
            raise UpstreamCut("the provider's stream broke off")


def _stamp(raw: bytes, result: dict[str, Any]) -> bytes:
    """The message with ``xproxy_result`` in its JSON (inside ``bytes`` for an invoke chunk)."""
    message = eventstream.decode(raw)
    payload = message.payload
    if message.event_type == "chunk":
        wrapper = json.loads(payload)
        inner = splice(base64.b64decode(wrapper["bytes"]), "xproxy_result", result)
        payload = json.dumps({"bytes": base64.b64encode(inner).decode()}, separators=(",", ":")).encode()
    else:
        payload = splice(payload, "xproxy_result", result)
    return eventstream.encode(message.headers, payload)
