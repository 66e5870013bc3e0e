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

from ..budgets.guard import admit
from ..budgets.guard import settle as settle_budget
from ..context import Context
from ..events import UsageEvent, new_event_id
from ..providers import ApiAdapter, Observation
from ..providers.base import loads as _loads
from ..providers.eventstream import CONTENT_TYPE as EVENTSTREAM
from ..providers.sse import SSEEvent
from ..records import CallRecord
from ..redact import response_headers
from ..tracking import TrackingScope
from .build import build_event, text
from .proxying import ProxyTarget, apply_context, proxyable, rewrite_to_proxy
from .routes import Route, RouteTable


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




class Exchange(CallRecord):
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
                        mode=self.mode,
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
            "request": text(self.request_body),
            "response": text(self.body),
            "headers": [[h["name"], h["value"]] for h in response_headers(self.headers)] if self.headers is not None else None,
            "error": self.obs.error,
            "context": orjson.Fragment(_context_json(self.context)),
        }



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


def _raw(request: Any) -> bytes | None:
    try:
        return request.content
    except AttributeError:  # botocore's prepared request
        body = getattr(request, "body", None)
        return body if isinstance(body, bytes) else None
    except Exception:  # a streaming request body we must not consume
        return None


def _replace_body(request: Any, content: bytes) -> None:
    """Give ``request`` a new JSON body in place (the SDK builds a fresh request per attempt).

    Cheaper than building a new request on the hot path. The stream is asked for uncompressed,
    since we may hide one of its events.
    """
    request.stream = type(request.stream)(content)
    request._content = content
    request.headers["content-length"] = str(len(content))
    request.headers["accept-encoding"] = "identity"
