"""A finished call's ``UsageEvent``: built from a live ``Exchange`` or a call read back from the journal.

Reads the response body (and, when it was not parsed on the request path, the model from the
request body), then derives units, tokens, timings, status and Pay-i's answer. This is the
deferred half of capture: it runs when the ledger or the sender first needs the event, off the
caller's request path for plain JSON calls. ``event_from_journal`` is registered with
``records`` so delivery can replay journalled calls without importing capture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import records, xproxy
from ..context import Context
from ..events import Status, UsageEvent
from ..providers import ApiAdapter, Observation, bedrock, endpoint_for, read_error
from ..providers.base import loads as _loads
from ..records import CallRecord
from ..redact import response_headers
from ..tracking import TrackingScope
from ..units import empty_units, token_counts, units_for
from .estimate import estimate_input_tokens
from .routes import Route

if TYPE_CHECKING:
    from .exchange import Exchange

_PROXY_HINTS = {
    "invalid_api_key": " — check PAYI_API_KEY (or pn.configure(api_key=...))",
    "invalid_limit_ids": " — check the ids with pn.limits.list()",
    "invalid_provider_uri": " — check the provider base URL your client uses",
}


def build_event(x: Exchange | JournalCall) -> UsageEvent:
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
        request_json=text(x.request_body) if log else None,
        response_json=(obs.chunks or None) if x.streaming else (text(x.body) if log else None),
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
        blocked = ", ".join(xproxy.blocked_limit_ids(result)) or "a limit"
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


class JournalCall(CallRecord):
    """A deferred call read back from the journal: what ``build_event`` reads of an ``Exchange``."""

    __slots__ = (
        "route", "adapter", "obs", "body", "request_body", "model", "streaming", "mode", "log", "event_id",
        "timestamp", "start", "end", "first_byte_at", "status_code", "context", "scope", "headers", "lazy",
        "_record", "_event",
    )  # fmt: skip

    route: Route
    adapter: ApiAdapter
    obs: Observation
    body: bytes | None
    request_body: bytes | None
    model: str | None
    streaming: bool
    log: bool
    start: float
    end: float
    first_byte_at: float | None
    status_code: int | None
    context: Context
    scope: TrackingScope | None
    headers: list[tuple[str, str]] | None

    def __init__(self, event_id: str, record: Mapping[str, Any]) -> None:
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
        self.headers = [(str(name), str(value)) for name, value in record["headers"]] if record.get("headers") else None
        self.lazy = True
        self._record = dict(record)
        self._event: UsageEvent | None = None

    def event(self) -> UsageEvent:
        if self._event is None:
            self._event = build_event(self)
        return self._event

    def journal(self) -> dict[str, Any]:
        return self._record


def event_from_journal(event_id: str, record: Mapping[str, Any]) -> UsageEvent:
    """Rebuild a deferred call's ``UsageEvent`` from its journal record (recovery after a crash)."""
    return JournalCall(event_id, record).event()


records.register_reader(event_from_journal)


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



def text(raw: bytes | None) -> str | None:
    """Body bytes as text for the journal and logged prompts (undecodable bytes replaced)."""
    return raw.decode("utf-8", "replace") if raw else None
