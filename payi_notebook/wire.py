"""A ``UsageEvent`` as Pay-i's ingest wire format: an IngestRequest body plus ``xProxy-*`` headers,
or one BulkIngestRequest item.

Attribution travels as headers on ``POST /ingest`` and as body fields in bulk items, so a
spooled (body, headers) pair is all the flusher needs to send either way. Nulls are left
out. A call with no ``provider_response_id`` gets ``payi_<event_id>``: stable across
re-sends, so Pay-i's de-duplication on (category, provider_response_id) still works.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import redact
from .events import UsageEvent
from .units import empty_units

INT32_MAX = 2_147_483_647
UNKNOWN_RESOURCE = "system.unknown_model"

# ``POST /ingest`` header → BulkIngestRequest field.
_HEADER_FIELDS = {
    "xProxy-UseCase-Name": "use_case_name",
    "xProxy-UseCase-ID": "use_case_id",
    "xProxy-UseCase-Step": "use_case_step",
    "xProxy-User-ID": "user_id",
    "xProxy-Account-Name": "account_name",
    "xProxy-Resource-Scope": "scope",
}


def response_id(event: UsageEvent) -> str:
    """The event's provider response id, or a stable ``payi_<event_id>`` when the provider gave none."""
    return event.provider_response_id or f"payi_{event.event_id}"


def logging_enabled(event: UsageEvent, default: bool = True) -> bool:
    """The context's choice, else the global ``log_prompt_and_response`` setting."""
    choice = event.context.log_prompt_and_response
    return default if choice is None else choice


def iso_utc(timestamp: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. ``2025-01-02T03:04:05.678Z``.

    Formatted by hand from ``time.gmtime``: several times cheaper than ``datetime``, and it
    runs once per captured call.
    """
    seconds = int(timestamp)
    millis = int((timestamp - seconds) * 1000)
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}Z"


def _ms(value: float | None) -> int | None:
    if value is None or value != value:  # None or NaN
        return None
    return min(max(int(round(value)), 0), INT32_MAX)


def _units(units: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    out = {
        key: {side: min(max(int(count), 0), INT32_MAX) for side, count in sides.items() if side in ("input", "output")}
        for key, sides in units.items()
    }
    return out or empty_units()


def _response_headers(headers: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
    if not headers:
        return None
    kept = [
        {"name": str(h["name"]), "value": "" if h.get("value") is None else str(h["value"])}
        for h in headers
        if h.get("name") and redact.kept(str(h["name"]))
    ]
    return kept or None


def ingest_body(event: UsageEvent, log_prompt_and_response: bool = True) -> dict[str, Any]:
    """The IngestRequest body for ``event``; prompt/response JSON only when logging is on."""
    body: dict[str, Any] = {
        "category": event.category,
        "resource": event.resource or UNKNOWN_RESOURCE,
        "units": _units(event.units),
        "event_timestamp": iso_utc(event.timestamp),
        "provider_response_id": response_id(event),
    }
    if (latency := _ms(event.latency_ms)) is not None:
        body["end_to_end_latency_ms"] = latency
    if (ttft := _ms(event.ttft_ms)) is not None:
        body["time_to_first_token_ms"] = ttft
    if event.http_status is not None:
        body["http_status_code"] = int(event.http_status)
    if event.provider_uri:
        body["provider_uri"] = event.provider_uri
    if logging_enabled(event, log_prompt_and_response):
        if event.request_json is not None:
            body["provider_request_json"] = event.request_json
        if event.response_json is not None:
            body["provider_response_json"] = event.response_json
    if (headers := _response_headers(event.response_headers)) is not None:
        body["provider_response_headers"] = headers
    ctx = event.context
    if ctx.properties:
        body["properties"] = dict(ctx.properties)
    if ctx.use_case_properties and ctx.use_case_name:
        body["use_case_properties"] = dict(ctx.use_case_properties)
    return body


def ingest_headers(event: UsageEvent, log_prompt_and_response: bool = True) -> dict[str, str]:
    """The ``xProxy-*`` attribution headers of ``POST /ingest`` (never the API key)."""
    headers = event.context.ingest_headers()
    if not logging_enabled(event, log_prompt_and_response):
        headers["xProxy-Logging-Disable"] = "True"
    return headers


def bulk_fields(headers: Mapping[str, str]) -> dict[str, Any]:
    """The BulkIngestRequest attribution fields carried by a set of ingest headers."""
    fields: dict[str, Any] = {}
    for header, value in headers.items():
        if header == "xProxy-Limit-IDs":
            fields["limit_ids"] = [i for i in value.split(",") if i]
        elif header == "xProxy-UseCase-Version":
            fields["use_case_version"] = int(value)
        elif (name := _HEADER_FIELDS.get(header)) is not None:
            fields[name] = value
    return fields


def bulk_item_from(body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """A bulk item from a rendered ingest body and its headers (how spooled events are batched)."""
    return {**body, **bulk_fields(headers)}

