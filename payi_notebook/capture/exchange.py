"""One captured provider call, from the outgoing request to the finished ``UsageEvent``.

Everything here runs on the caller's request path, so it does only what must happen
there: read the request once, maybe adjust it (ask for stream usage; route via Pay-i's
proxy), time the call, read usage as the body passes, and hand a finished event to the
sink. Pricing and sending happen elsewhere, in the background. Any failure of ours is
reported and the caller's request and response go on untouched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..context import Context
from ..events import UsageEvent
from ..tracking import TrackingScope
from ..units import TokenCounts, token_counts, units_for
from .apis import ADAPTERS, ApiAdapter, Observation, read_error
from .proxying import ProxyTarget, context_from_headers, rewrite_to_proxy
from .redact import response_headers
from .routes import Route, RouteTable
from .sse import SSEEvent


@dataclass(frozen=True)
class CaptureConfig:
    """What capture needs from the session; replaced whole when settings change."""

    routes: RouteTable
    sink: Callable[[UsageEvent, TrackingScope | None], None]
    report: Callable[[str, BaseException | None], None]
    default_mode: str = "telemetry"
    log_default: bool = True
    proxy: ProxyTarget | None = None


EMPTY_UNITS = {"text": {"input": 0, "output": 0}}
_PROXY_HINTS = {
    "invalid_api_key": " — check PAYI_API_KEY (or pn.configure(api_key=...))",
    "invalid_limit_ids": " — check the ids with pn.limits.list()",
    "invalid_provider_uri": " — check the provider base URL your client uses",
}


class Exchange:
    """State of one call. ``finish*`` methods are idempotent: the event is emitted once."""

    __slots__ = (
        "config",
        "scope",
        "route",
        "adapter",
        "obs",
        "request",
        "mode",
        "model",
        "streaming",
        "hiding",
        "log",
        "request_json",
        "context",
        "start",
        "timestamp",
        "first_byte_at",
        "status_code",
        "headers",
        "_done",
        "_lock",
    )

    def __init__(self, config: CaptureConfig, scope: TrackingScope, route: Route, request: Any) -> None:
        self.config = config
        self.scope = scope
        self.route = route
        self.adapter: ApiAdapter = ADAPTERS[(route.provider, route.operation)]()
        self.obs = Observation()
        self.context: Context = scope.context
        self.first_byte_at: float | None = None
        self.status_code: int | None = None
        self.headers: Any = None
        self._done = False
        self._lock = threading.Lock()

        proxy_wanted = self.context.proxy if self.context.proxy is not None else config.default_mode == "proxy"
        self.mode = "proxy" if route.proxied or proxy_wanted else "telemetry"
        self.log = self.context.log_prompt_and_response
        if self.log is None:
            self.log = config.log_default

        body = _json_body(request)
        self.model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
        self.streaming = bool(isinstance(body, dict) and body.get("stream"))
        self.hiding = isinstance(body, dict) and self.adapter.prepare(body)
        content = orjson.dumps(body) if self.hiding else None
        self.request_json = _text(content if content is not None else _raw(request)) if self.log else None
        if self.log:
            self.obs.chunks = []

        if self.mode == "proxy" and not route.proxied and config.proxy is None:
            raise RuntimeError("proxy mode needs a Pay-i endpoint; none is configured")
        if content is not None:
            _replace_body(request, content)
        if route.proxied:
            self.context = context_from_headers(request.headers, scope.context)
        elif self.mode == "proxy":
            rewrite_to_proxy(request, route, config.proxy, self.context)  # type: ignore[arg-type]
        self.request = request
        self.timestamp = time.time()
        self.start = time.perf_counter()

    def report(self, what: str, exc: BaseException | None) -> None:
        self.config.report(what, exc)

    # -- response side -------------------------------------------------------------------

    def on_response(self, response: Any, stream_classes: tuple[type, type], is_async: bool) -> Any:
        """Attach to the response: parse a read body now, or wrap the unread stream."""
        self.status_code = response.status_code
        self.headers = response.headers
        if hasattr(response, "_content"):
            self.finish_body(response._content, eof=True)
            return response
        content_type = response.headers.get("content-type", "")
        sse = "text/event-stream" in content_type
        encoding = response.headers.get("content-encoding")
        cls = stream_classes[1] if is_async else stream_classes[0]
        response.stream = cls(response.stream, self, sse, encoding.strip().lower() if encoding else None)
        return response

    def observe_event(self, event: SSEEvent, now: float) -> bool:
        """A stream event passing by; False hides it from the caller."""
        if self.obs.chunks is not None and event.data:
            self.obs.chunks.append(event.data)
        return self.adapter.read_event(self.obs, event, self.hiding, now)

    def finish_body(self, body: bytes | None, eof: bool) -> None:
        """The body is done (read, exhausted or closed); parse what remains and emit."""
        if self._done:
            return
        try:
            if body:
                data = _loads(body)
                if self.status_code is not None and self.status_code >= 400:
                    read_error(self.obs, data)
                else:
                    self.adapter.read_json(self.obs, data)
                if self.obs.chunks is not None:
                    self.obs.chunks.append(_text(body) or "")
            elif self.status_code is not None and self.status_code < 400 and not self.obs.complete and not eof:
                self.obs.error = self.obs.error or "stream closed before it finished"
            self._emit()
        except Exception as exc:
            self.report("capturing a response failed", exc)

    def fail(self, exc: BaseException) -> None:
        """The call raised before a response (connection error, timeout, cancellation)."""
        if self._done:
            return
        try:
            self.obs.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._emit()
        except Exception as inner:
            self.report("capturing a failed call failed", inner)

    def abandon(self) -> None:
        """The response was garbage-collected without being read to the end or closed."""
        if not self._done:
            self.obs.error = self.obs.error or "response dropped before it was read"
            self.finish_body(None, eof=False)

    def _emit(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        end = time.perf_counter()
        obs = self.obs
        status = self.status_code
        ok = status is not None and status < 400
        partial = self.streaming and ok and not obs.complete
        usage = obs.usage
        if partial:
            usage = _partial_usage(self.route.provider, usage, obs.deltas)
        units = units_for(self.route.provider, usage) if usage else dict(EMPTY_UNITS)
        tokens: TokenCounts = token_counts(units)
        if partial and obs.error is None:
            obs.error = "stream ended before its final usage; counts are partial"
        event = UsageEvent(
            provider=self.route.provider,
            category=self.adapter.category,
            operation=self.route.operation,
            resource=self.model or obs.model,
            mode=self.mode,  # type: ignore[arg-type]
            streaming=self.streaming,
            timestamp=self.timestamp,
            units=units,
            tokens=tokens,
            latency_ms=(end - self.start) * 1000.0,
            ttft_ms=(self.first_byte_at - self.start) * 1000.0
            if self.streaming and self.first_byte_at is not None
            else None,
            http_status=status,
            status=self._status(),
            error=obs.error,
            partial=partial,
            context=self.context,
            execution_count=self.scope.execution_count,
            cell_id=self.scope.cell_id,
            provider_uri=self.route.base,
            request_json=self.request_json,
            response_json=_response_json(obs.chunks, self.streaming),
            response_headers=response_headers(self.headers) if self.headers is not None else None,
            xproxy_result=obs.xproxy_result,
        )
        event.provider_response_id = obs.response_id or f"payi_{event.event_id}"
        if self.mode == "proxy":
            self._proxy_outcome(event)
        self.config.sink(event, self.scope)

    def _proxy_outcome(self, event: UsageEvent) -> None:
        """Pay-i's answer to a proxied call: its cost, or why the call was blocked or refused."""
        result = self.obs.xproxy_result or {}
        if event.status == "blocked":
            event.payi_cost_usd = 0.0
            blocked = ", ".join(result.get("blocked_limit_ids") or []) or "a limit"
            event.error = f"blocked by limit {blocked}: {event.error or 'limit reached'}"
            return
        cost = (result.get("cost") or {}).get("total") or {}
        if isinstance(cost.get("base"), (int, float)):
            event.payi_cost_usd = float(cost["base"])
        if event.status == "failed":
            code = (self.obs.xproxy_error or {}).get("code")
            status = f"HTTP {event.http_status}" if event.http_status else "no answer"
            reason = event.error or status
            hint = _PROXY_HINTS.get(code or "", "")
            if code:
                event.error = f"Pay-i proxy refused the call ({status}, {code}): {reason}{hint}"
            else:
                event.error = f"Pay-i proxy failed ({status}): {reason}"

    def _status(self) -> str:
        if self.mode == "telemetry":
            return "pending"
        code = (self.obs.xproxy_error or {}).get("code")
        if code == "limit_reached":
            return "blocked"
        if self.obs.xproxy_result is not None:
            return "proxied"
        return "failed"


def _partial_usage(provider: str, usage: dict[str, Any] | None, deltas: int) -> dict[str, Any] | None:
    """Usage for a stream that stopped early: what arrived, else one token per content event."""
    if provider == "anthropic":
        merged = dict(usage or {})
        merged["output_tokens"] = max(int(merged.get("output_tokens") or 0), deltas)
        return merged
    if usage:
        return usage
    return {"prompt_tokens": 0, "completion_tokens": deltas} if deltas else None


def _response_json(chunks: list[str] | None, streaming: bool) -> str | list[str] | None:
    if not chunks:
        return None
    return chunks if streaming else chunks[-1]


def _raw(request: Any) -> bytes | None:
    try:
        return request.content
    except Exception:  # a streaming request body we must not consume
        return None


def _json_body(request: Any) -> Any:
    raw = _raw(request)
    return _loads(raw) if raw else None


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw else None


def _replace_body(request: Any, content: bytes) -> None:
    """Give ``request`` a new JSON body in place (the SDK builds a fresh request per attempt).

    Cheaper than building a new request on the hot path. The stream is asked for uncompressed,
    since we may hide one of its events.
    """
    request.stream = type(request.stream)(content)
    request._content = content
    request.headers["content-length"] = str(len(content))
    request.headers["accept-encoding"] = "identity"
