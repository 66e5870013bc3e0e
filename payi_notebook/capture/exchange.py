"""One captured provider call, from the outgoing request to its ``UsageEvent``.

Everything here runs on the caller's request path, so it does only what must happen
there: look at the request (parsing it only when it may stream: stream usage must be asked
for before sending), maybe adjust it (ask for stream usage; route via Pay-i's proxy), time
the call, read a stream's usage as it passes, and hand the finished call to the sink.

The ``UsageEvent`` itself is built by ``Exchange.event()``: at once for streams (their
usage was read as they passed) and for telemetry calls whose prompts are not logged, and
later — when the ledger or the flusher first needs it — for plain JSON calls. A deferred
telemetry call's journal record holds the raw request and response (what Pay-i will
receive anyway), and ``event_from_journal`` rebuilds the event from it after a crash. Any failure of ours is
reported and the caller's request and response go on untouched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .. import xproxy
from ..budgets.guard import admit
from ..budgets.guard import settle as settle_budget
from ..context import Context
from ..events import Status, UsageEvent, new_event_id
from ..tracking import TrackingScope
from ..units import empty_units, token_counts, units_for
from .adapters import ApiAdapter, Observation, bedrock, endpoint_for, read_error
from .estimate import estimate_input_tokens
from .eventstream import CONTENT_TYPE as EVENTSTREAM
from .proxying import ProxyTarget, apply_context, proxyable, rewrite_to_proxy
from .redact import response_headers
from .routes import Route, RouteTable
from .sse import SSEEvent


@dataclass(frozen=True)
class CaptureConfig:
    """What capture needs from the session; replaced whole when settings change."""

    routes: RouteTable
    sink: Callable[[Exchange, TrackingScope], None]
    report: Callable[[str, BaseException | None], None]
    default_mode: str = "telemetry"
    log_default: bool = True
    proxy: ProxyTarget | None = None
    session_budget: Any = None  # a budgets.Reserver for every tracked call, or None
    record_refusal: Callable[[UsageEvent, TrackingScope], None] | None = None


_PROXY_HINTS = {
    "invalid_api_key": " — check PAYI_API_KEY (or pn.configure(api_key=...))",
    "invalid_limit_ids": " — check the ids with pn.limits.list()",
    "invalid_provider_uri": " — check the provider base URL your client uses",
}


class Exchange:
    """State of one call. ``finish*`` hand it to the sink once; ``event()`` builds its event once."""

    __slots__ = (
        "config",
        "scope",
        "route",
        "adapter",
        "obs",
        "request_body",
        "mode",
        "model",
        "streaming",
        "hiding",
        "log",
        "context",
        "start",
        "end",
        "timestamp",
        "first_byte_at",
        "status_code",
        "headers",
        "body",
        "event_id",
        "lazy",
        "unguarded",
        "hold",
        "_done",
        "_event",
        "_lock",
    )

    def __init__(
        self,
        config: CaptureConfig,
        scope: TrackingScope,
        route: Route,
        request: Any,
        rewrite: Callable[[Any, Route, ProxyTarget, Context, str | None], Context] = rewrite_to_proxy,
    ) -> None:
        """``rewrite`` re-addresses the request to Pay-i's proxy (the HTTP library's request type)."""
        self.config = config
        self.scope = scope
        self.route = route
        self.adapter: ApiAdapter = route.endpoint.adapter()  # type: ignore[union-attr]
        self.obs = Observation()
        self.context: Context = scope.context
        self.first_byte_at: float | None = None
        self.status_code: int | None = None
        self.headers: Any = None
        self.body: bytes | None = None
        self.end = 0.0
        self.event_id = new_event_id()
        self.lazy = False
        self._done = False
        self._event: UsageEvent | None = None
        self._lock = threading.Lock()

        proxy_wanted = self.context.proxy if self.context.proxy is not None else config.default_mode == "proxy"
        # no Pay-i proxy route for this API (the Gemini API, ...): direct and ingested, and the cell says so
        self.unguarded = proxy_wanted and not route.proxied and not proxyable(route)
        self.mode = "proxy" if route.proxied or (proxy_wanted and not self.unguarded) else "telemetry"
        if self.unguarded and self.context.limit_ids:
            self.context = _without_limits(self.context)  # Pay-i refuses an ingest naming a Block limit
        self.log = self.context.log_prompt_and_response
        if self.log is None:
            self.log = config.log_default

        raw = _raw(request)
        # the model in the path (Google, Vertex), else read from the request body when the event is built
        self.model = route.params.get("model")
        self.streaming = route.endpoint.stream  # type: ignore[union-attr]
        self.hiding = False
        content = None
        price_as = self.mode == "proxy" and not route.proxied and route.spec.price_as_resource
        if raw and (b'"stream"' in raw or price_as):  # only a request that may stream is parsed on the request path
            body = _loads(raw)
            if isinstance(body, dict):
                self.model = body.get("model") if isinstance(body.get("model"), str) else self.model
                self.streaming = self.streaming or bool(body.get("stream"))
                self.hiding = self.adapter.prepare(body)
                content = orjson.dumps(body) if self.hiding else None
        self.request_body = content if content is not None else raw
        if self.log and self.streaming:
            self.obs.chunks = []

        if self.mode == "proxy" and not route.proxied and config.proxy is None:
            raise RuntimeError("proxy mode needs a Pay-i endpoint; none is configured")
        if content is not None:
            _replace_body(request, content)
        if route.proxied:
            self.context = apply_context(request.headers, self.context)
        elif self.mode == "proxy":
            self.context = rewrite(request, route, config.proxy, self.context, self.model)  # type: ignore[arg-type]
        self.timestamp = time.time()
        self.hold = None
        if scope.budgets or config.session_budget is not None:  # the only budget work when none applies
            self.hold = admit(self, raw)  # raises BudgetExceeded (recorded) before anything is sent
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
        framing = "sse" if "text/event-stream" in content_type else "eventstream" if EVENTSTREAM in content_type else None
        encoding = response.headers.get("content-encoding")
        cls = stream_classes[1] if is_async else stream_classes[0]
        response.stream = cls(response.stream, self, framing, encoding.strip().lower() if encoding else None)
        return response

    def observe_event(self, event: SSEEvent, now: float) -> bool:
        """A stream event passing by; False hides it from the caller."""
        if self.obs.chunks is not None and event.data:
            self.obs.chunks.append(event.data)
        return self.adapter.read_event(self.obs, event, self.hiding, now)

    def finish_body(self, body: bytes | None, eof: bool) -> None:
        """The body is done (read, exhausted or closed): hand the call over; it is read when built."""
        if self._done:
            return
        try:
            self.body = body or None
            if not body and self.status_code is not None and self.status_code < 400 and not self.obs.complete and not eof:
                self.obs.error = self.obs.error or "stream closed before it finished"
            self._hand_over()
        except Exception as exc:
            self.report("capturing a response failed", exc)

    def fail(self, exc: BaseException) -> None:
        """The call raised before a response (connection error, timeout, cancellation)."""
        if self._done:
            return
        try:
            self.obs.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._hand_over()
        except Exception as inner:
            self.report("capturing a failed call failed", inner)

    def abandon(self) -> None:
        """The response was garbage-collected without being read to the end or closed."""
        if not self._done:
            self.obs.error = self.obs.error or "response dropped before it was read"
            self.finish_body(None, eof=False)

    def _hand_over(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self.end = time.perf_counter()
        if self.hold is not None:
            settle_budget(self)
        # deferred: plain JSON calls, except telemetry ones whose prompts must stay off the disk journal
        self.lazy = not self.streaming and (self.mode == "proxy" or bool(self.log))
        if not self.lazy:
            self.event()
        self.config.sink(self, self.scope)

    def event(self) -> UsageEvent:
        """The call's ``UsageEvent``, built on first use (thread-safe; later calls return the same)."""
        with self._lock:
            if self._event is None:
                try:
                    self._event = build_event(self)
                except Exception as exc:  # a failure of ours still leaves a row that says so
                    self.report("building a captured call's event failed", exc)
                    self._event = UsageEvent(
                        provider=self.route.provider,
                        category=self.route.spec.category,
                        operation=self.route.operation,
                        mode=self.mode,  # type: ignore[arg-type]
                        event_id=self.event_id,
                        timestamp=self.timestamp,
                        http_status=self.status_code,
                        context=self.context,
                        error=f"payi_notebook could not read this call: {exc!r}",
                    )
                    self._event.provider_response_id = f"payi_{self.event_id}"
            return self._event

    def journal(self) -> dict[str, Any]:
        """What the spool keeps of a deferred call: enough for ``event_from_journal`` after a crash."""
        return {
            "provider": self.route.provider,
            "operation": self.route.operation,
            "uri": self.route.base,
            "mode": self.mode,
            "model": self.model,
            "deployment": self.route.params.get("deployment"),
            "timestamp": self.timestamp,
            "latency_ms": (self.end - self.start) * 1000.0,
            "http_status": self.status_code,
            "request": _text(self.request_body),
            "response": _text(self.body),
            "headers": [[h["name"], h["value"]] for h in response_headers(self.headers)] if self.headers is not None else None,
            "error": self.obs.error,
            "context": orjson.Fragment(_context_json(self.context)),
        }



def build_event(x: Any) -> UsageEvent:
    """The ``UsageEvent`` of a finished call: an ``Exchange``, or a call replayed from the journal.

    Reads the response body (and, when it was not parsed on the request path, the model from
    the request body), then derives units, tokens, timings, status and Pay-i's answer.
    """
    obs: Observation = x.obs
    x.adapter.settle(obs)
    status = x.status_code
    if x.headers is not None:
        x.adapter.read_headers(obs, x.headers)
    if x.body:
        data = _loads(x.body)
        if status is not None and status >= 400:
            read_error(obs, data)
        else:
            x.adapter.read_json(obs, data)
    model = x.model
    if model is None and x.request_body:
        request = _loads(x.request_body)
        if isinstance(request, dict) and isinstance(request.get("model"), str):
            model = request["model"]
    provider = x.route.provider
    ok = status is not None and status < 400
    partial = x.streaming and ok and not obs.complete
    usage = obs.usage
    wire = x.adapter.wire
    estimated = False
    if partial:
        usage = _partial_usage(wire, usage, obs.deltas)
    resource = x.adapter.resource(model, obs.model)
    units = units_for(wire, usage, resource) if usage else empty_units()
    if partial and not token_counts(units).input:  # the prompt's usage never came: estimate it
        tokens = estimate_input_tokens(_loads(x.request_body) if x.request_body else None)
        if tokens:
            usage, estimated = _with_input(wire, usage, tokens), True
            units = units_for(wire, usage, resource)
    if partial and obs.error is None:
        obs.error = "stream ended before its final usage; counts are partial"
    if estimated:
        obs.error = f"{obs.error}; input tokens estimated from the request"
    log = x.log
    scope = x.scope
    event = UsageEvent(
        provider=provider,
        category=x.route.spec.category,
        operation=x.route.operation,
        resource=resource,
        deployment=x.route.params.get("deployment"),
        mode=x.mode,
        streaming=x.streaming,
        event_id=x.event_id,
        timestamp=x.timestamp,
        units=units,
        tokens=token_counts(units),
        latency_ms=(x.end - x.start) * 1000.0,
        ttft_ms=(x.first_byte_at - x.start) * 1000.0 if x.streaming and x.first_byte_at is not None else None,
        http_status=status,
        status=_status(x.mode, obs),
        error=obs.error,
        partial=partial,
        input_estimated=estimated,
        context=x.context,
        execution_count=scope.execution_count if scope is not None else None,
        cell_id=scope.cell_id if scope is not None else None,
        worker=scope.worker if scope is not None else None,
        provider_uri=x.route.base,
        request_json=_text(x.request_body) if log else None,
        response_json=(obs.chunks or None) if x.streaming else (_text(x.body) if log else None),
        response_headers=response_headers(x.headers) if x.headers is not None else None,
        xproxy_result=obs.xproxy_result,
    )
    event.provider_response_id = obs.response_id or f"payi_{event.event_id}"
    if x.mode == "proxy":
        _proxy_outcome(event, obs)
    return event


def _proxy_outcome(event: UsageEvent, obs: Observation) -> None:
    """Pay-i's answer to a proxied call: its cost, or why the call was blocked or refused."""
    result = obs.xproxy_result or {}
    if event.status == "blocked":
        event.payi_cost_usd = 0.0
        blocked = ", ".join(result.get("blocked_limit_ids") or []) or "a limit"
        event.error = f"blocked by limit {blocked}: {event.error or 'limit reached'}"
        return
    event.payi_cost_usd = xproxy.cost(result)
    if event.status == "failed":
        code = (obs.xproxy_error or {}).get("code")
        status = f"HTTP {event.http_status}" if event.http_status else "no answer"
        reason = event.error or status
        hint = _PROXY_HINTS.get(code or "", "")
        if code:
            event.error = f"Pay-i proxy refused the call ({status}, {code}): {reason}{hint}"
        else:
            event.error = f"Pay-i proxy failed ({status}): {reason}"


def _status(mode: str, obs: Observation) -> Status:
    if mode == "telemetry":
        return "pending"
    code = (obs.xproxy_error or {}).get("code")
    if code == "limit_reached":
        return "blocked"
    if obs.xproxy_result is not None:
        return "proxied"
    return "failed"


class _Replay:
    """A call read back from the journal, with what ``build_event`` reads of an ``Exchange``."""

    __slots__ = (
        "route", "adapter", "obs", "body", "request_body", "model", "streaming", "mode", "log", "event_id",
        "timestamp", "start", "end", "first_byte_at", "status_code", "context", "scope", "headers",
    )  # fmt: skip

    def __init__(self, event_id: str, record: dict[str, Any]) -> None:
        provider, operation = record["provider"], record["operation"]
        endpoint = endpoint_for(provider, operation)
        params = {"deployment": record["deployment"]} if record.get("deployment") else {}
        self.route = Route(provider, operation, False, record.get("uri") or "", endpoint, "", params)
        self.adapter = endpoint.adapter()
        self.obs = Observation(error=record.get("error"))
        self.body = _bytes(record.get("response"))
        self.request_body = _bytes(record.get("request"))
        self.model = record.get("model")
        self.streaming = False
        self.mode = record.get("mode") or "telemetry"
        self.event_id = event_id
        self.timestamp = float(record["timestamp"])
        self.start, self.end = 0.0, float(record.get("latency_ms") or 0.0) / 1000.0
        self.first_byte_at = None
        self.status_code = record.get("http_status")
        self.context = Context.from_json(record.get("context") or {})
        self.log = self.context.log_prompt_and_response is not False
        self.scope = None
        self.headers = [tuple(pair) for pair in record["headers"]] if record.get("headers") else None


def event_from_journal(event_id: str, record: dict[str, Any]) -> UsageEvent:
    """Rebuild a deferred call's ``UsageEvent`` from its journal record (recovery after a crash)."""
    return build_event(_Replay(event_id, record))


_context_cache: tuple[Context | None, bytes] = (None, b"{}")


def _context_json(context: Context) -> bytes:
    """A context as compact JSON (a cell's calls share one context: the last one is kept)."""
    global _context_cache
    cached, encoded = _context_cache
    if cached is not context:
        encoded = orjson.dumps(context.to_json())
        _context_cache = (context, encoded)
    return encoded


_unlimited_cache: tuple[Context | None, Context | None] = (None, None)


def _without_limits(context: Context) -> Context:
    """``context`` without its limit IDs (a cell's calls share one context: the last one is kept)."""
    global _unlimited_cache
    cached, unlimited = _unlimited_cache
    if cached is not context or unlimited is None:
        unlimited = replace(context, limit_ids=())
        _unlimited_cache = (context, unlimited)
    return unlimited


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text else None


def _partial_usage(wire: str, usage: dict[str, Any] | None, deltas: int) -> dict[str, Any] | None:
    """Usage for a stream that stopped early: what arrived, else one token per content event."""
    if wire == "bedrock":
        return bedrock.partial_usage(usage, deltas)
    if wire == "google":
        return usage or ({"candidatesTokenCount": deltas} if deltas else None)
    if wire == "anthropic":
        merged = dict(usage or {})
        merged["output_tokens"] = max(int(merged.get("output_tokens") or 0), deltas)
        return merged
    if usage:
        return usage
    return {"prompt_tokens": 0, "completion_tokens": deltas} if deltas else None


def _with_input(wire: str, usage: dict[str, Any] | None, tokens: int) -> dict[str, Any]:
    """``usage`` with ``tokens`` prompt tokens, in the wire format's own field for them."""
    merged = dict(usage or {})
    if wire == "google":
        merged["promptTokenCount"] = tokens
        return merged
    if wire == "bedrock" and ("inputTokens" in merged or not merged):  # Bedrock's own TokenUsage shape
        merged["inputTokens"] = tokens
        return merged
    responses_style = wire == "anthropic" or "input_tokens" in merged or "output_tokens" in merged
    merged["input_tokens" if responses_style else "prompt_tokens"] = tokens
    return merged


def _raw(request: Any) -> bytes | None:
    try:
        return request.content
    except AttributeError:  # botocore's prepared request
        body = getattr(request, "body", None)
        return body if isinstance(body, bytes) else None
    except Exception:  # a streaming request body we must not consume
        return None


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
