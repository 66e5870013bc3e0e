"""A ``UsageEvent`` or an ``update()``'s changes as the values a row stores, checked first.

Everything here runs before the ledger's lock is taken and raises ``TypeError``/``ValueError``
with a message that names the bad field, so a malformed event never half-writes a row: the
ledger stores a ``failed`` row saying why instead. One small function per field family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from ..context import Context
from ..events import STATUSES, UsageEvent
from ..units import Units, units_from_tokens
from .schema import (
    CONTEXT_TEXT,
    ESTIMATED,
    NO_UNITS,
    PARTIAL,
    SHAPE_POSITIONS,
    SHAPE_TYPES,
    STATUS_CODES,
    UPDATABLE,
)

NAN = math.nan
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
LimitItems = tuple[tuple[str, str], ...]
_to_json = orjson.dumps  # compact UTF-8 JSON bytes; an order of magnitude cheaper on the append path


class Encoded(NamedTuple):
    """One event as the store keeps it; ``numbers`` are the record's fields after the entry numbers."""

    key: tuple[Any, ...]  # the shape fields and id(context): interned by the store
    context: Context
    raw_id: bytes | None  # 16 bytes, or None: the id is kept verbatim
    event_id: str
    response: bytes | None
    xproxy: bytes | None
    request: bytes | None
    states: LimitItems | None
    error: str | None
    own_units: Units | None  # a map the token counts cannot rebuild
    numbers: tuple[Any, ...]  # timestamp, 5 token counts, est, payi, latency, ttft, http, status, flags


def utf8(name: str, value: Any) -> bytes | None:
    """Text for a heap (None stays None); bad types and lone surrogates raise naming ``name``."""
    if value is None:
        return None
    if type(value) is not str:
        raise TypeError(f"{name} must be str or None, got {type(value).__name__}")
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{name} {value!r} is not valid text (lone surrogate)") from None


def xproxy_fields(result: Any) -> tuple[bytes, bytes | None, LimitItems | None]:
    """An ``xproxy_result`` as UTF-8 JSON, with the Pay-i request id and limit states it carries."""
    if not isinstance(result, Mapping):
        raise TypeError(f"xproxy_result must be a dict, got {type(result).__name__}")
    try:
        encoded = _to_json(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"xproxy_result must be JSON data as Pay-i sends it: {exc}") from None
    request_id = result.get("request_id")
    limits = result.get("limits")
    states = None
    if isinstance(limits, Mapping):
        states = tuple(
            (str(limit_id), status["state"])
            for limit_id, status in limits.items()
            if isinstance(status, Mapping) and isinstance(status.get("state"), str)
        )
    return encoded, (utf8("request_id", request_id) if isinstance(request_id, str) else None), states


def limit_items(value: Any) -> LimitItems:
    """``limit_states`` as interned-ready items (None: none)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"limit_states must be a dict of limit id -> state string, got {value!r}")
    return tuple(value.items())


def raw_event_id(event_id: Any) -> bytes | None:
    """The 16 bytes of a lowercase 32-digit hex id (what ``new_event_id`` makes); None: keep it verbatim."""
    if type(event_id) is not str:
        raise TypeError(f"event_id must be str, got {type(event_id).__name__}")
    if len(event_id) != 32 or not (event_id.islower() or event_id.isdigit()):
        return None
    try:
        raw = bytes.fromhex(event_id)
    except ValueError:
        return None
    return raw if len(raw) == 16 else None


def optional_text(name: str, value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise TypeError(f"{name} must be str or None, got {type(value).__name__}")
    return value


def units_fields(provider: str, units: Units, tokens: Any) -> tuple[int, Units | None]:
    """The ``NO_UNITS`` flag and the map to keep: None when the token counts rebuild it exactly."""
    if not units:
        return NO_UNITS, None
    if units == units_from_tokens(provider, tokens):
        return 0, None
    return 0, {name: dict(sides) for name, sides in units.items()}


def shape_key(event: UsageEvent) -> tuple[Any, ...]:
    """What a cell's calls share (the ``SHAPE_TYPES`` fields) and the identity of their context."""
    return (
        event.mode,
        event.provider,
        event.category,
        event.resource,
        event.operation,
        event.streaming,
        event.cell_id,
        event.execution_count,
        event.provider_uri,
        event.worker,
        event.deployment,
        id(event.context),
    )


def _nan(value: float | None) -> float:
    return NAN if value is None else value


def encode(event: UsageEvent) -> Encoded:
    """``event`` as stored values; raises ``TypeError`` naming what is malformed."""
    try:
        provider = event.provider
        flags, own_units = units_fields(provider, event.units, event.tokens)
        flags |= (PARTIAL if event.partial else 0) | (ESTIMATED if event.input_estimated else 0)
        result = event.xproxy_result
        xproxy, request, states = (None, None, None) if result is None else xproxy_fields(result)
        http = event.http_status
        numbers = (
            event.timestamp,
            *event.tokens,
            _nan(event.est_cost_usd),
            _nan(event.payi_cost_usd),
            _nan(event.latency_ms),
            _nan(event.ttft_ms),
            -1 if http is None else http,
            STATUS_CODES[event.status],
            flags,
        )
        return Encoded(
            shape_key(event),
            event.context,
            raw_event_id(event.event_id),
            event.event_id,
            utf8("provider_response_id", event.provider_response_id),
            xproxy,
            request,
            states,
            optional_text("error", event.error),
            own_units,
            numbers,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TypeError(f"Ledger.append needs a well-formed UsageEvent: {exc}") from None


def shape_problem(values: tuple[Any, ...], ctx: Any) -> str:
    """What is wrong with a new shape's fields ("" if nothing): a bad one would break every build."""
    for (name, kind, optional), value in zip(SHAPE_TYPES, values):
        if (value is None and not optional) or (
            value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool)))
        ):
            return f"UsageEvent.{name} must be {kind.__name__}{' or None' if optional else ''}, got {value!r}"
    if not isinstance(ctx, Context):
        return f"UsageEvent.context must be a Context, got {type(ctx).__name__}"
    return _context_problem(ctx) or _range_problem(values[SHAPE_POSITIONS["execution_count"]], ctx)


def _context_problem(ctx: Context) -> str:
    for name in CONTEXT_TEXT:
        if not isinstance(getattr(ctx, name), (str, type(None))):
            return f"Context.{name} must be str or None, got {getattr(ctx, name)!r}"
    version = ctx.use_case_version
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        return f"Context.use_case_version must be int or None, got {version!r}"
    if not all(isinstance(limit_id, str) for limit_id in ctx.limit_ids):
        return f"Context.limit_ids must be strings, got {ctx.limit_ids!r}"
    if not isinstance(ctx.properties, Mapping):
        return f"Context.properties must be a mapping, got {type(ctx.properties).__name__}"
    return ""


def _range_problem(execution_count: int | None, ctx: Context) -> str:
    for name, value in (("UsageEvent.execution_count", execution_count), ("Context.use_case_version", ctx.use_case_version)):
        if value is not None and not INT64_MIN <= value <= INT64_MAX:  # the frame's Int64 column
            return f"{name} is out of range: {value!r}"
    return ""


def cost(name: str, value: Any) -> float:
    if value is None:
        return NAN
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of USD or None, got {type(value).__name__}")
    return float(value)


def _status(value: Any) -> int:
    if value not in STATUS_CODES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {value!r}")
    return STATUS_CODES[value]


def _http_status(value: Any) -> int:
    if value is not None and (type(value) is not int or not 0 <= value <= 32767):
        raise ValueError(f"http_status must be an HTTP status code or None, got {value!r}")
    return -1 if value is None else value


_CHANGE_ENCODERS = {
    "status": lambda name, value: _status(value),
    "est_cost_usd": cost,
    "payi_cost_usd": cost,
    "http_status": lambda name, value: _http_status(value),
    "limit_states": lambda name, value: limit_items(value),
    "payi_request_id": utf8,
    "provider_response_id": utf8,
    "error": optional_text,
}


def prepare_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated, storage-ready values for ``update``; raises before anything is touched.

    ``xproxy_result`` also sets ``payi_request_id`` and ``limit_states`` from what it
    carries, unless those are passed too (explicit values win).
    """
    unknown = changes.keys() - UPDATABLE
    if unknown:
        raise TypeError(f"Ledger.update() got unknown field(s) {sorted(unknown)}; updatable: {sorted(UPDATABLE)}")
    out: dict[str, Any] = {}
    if "xproxy_result" in changes:
        out["xproxy_result"] = None
        if changes["xproxy_result"] is not None:
            out["xproxy_result"], request_id, states = xproxy_fields(changes["xproxy_result"])
            if request_id is not None:
                out["payi_request_id"] = request_id
            if states is not None:
                out["limit_states"] = states
    for name, value in changes.items():
        if name != "xproxy_result":
            out[name] = _CHANGE_ENCODERS[name](name, value)
    return out


def failed_row(error: str, event: Any = None) -> UsageEvent:
    """A row standing for a call whose event could not be built or stored, with why: the row
    is kept (so no later row shifts and the call is not silently lost), its bad values not."""
    event_id = getattr(event, "event_id", None)
    if type(event_id) is not str or not event_id:
        return UsageEvent(provider="unknown", category="unknown", operation="unknown", status="failed", error=error)
    return UsageEvent(
        event_id=event_id, provider="unknown", category="unknown", operation="unknown", status="failed", error=error
    )
