"""Turn one usage event into what Pay-i would keep and answer: cost, limit states, result.

Ingest, bulk ingest and the proxy all go through ``Recorder`` so duplicates, limits and
result lookups behave the same whichever way an event arrived. Pricing happens before the
write lock; the duplicate check, limit updates and the insert share one immediate transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from payi_notebook.pricing import Price, price_units
from payi_notebook.units import Units

from . import errors
from .attribution import Attribution
from .limits import BLOCK, BLOCKED, BLOCKED_EXTERNAL, Limit
from .store import Store

LOGGED_FIELDS = (
    "provider_request_json",
    "provider_request_reasoning_json",
    "provider_response_json",
    "provider_request_headers",
    "provider_response_headers",
    "provider_response_function_calls",
)
SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "xproxy-api-key", "proxy-authorization", "cookie"}


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as Pay-i's timestamps read."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Event:
    """One usage event, however it arrived (``source``: ingest, bulk or proxy)."""

    source: str
    category: str
    resource: str | None
    units: Units
    event_timestamp: datetime
    attribution: Attribution
    provider_response_id: str | None = None
    http_status_code: int | None = None
    failed: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    received: dict[str, Any] | None = None  # the ingest/bulk body as it arrived (None for proxied calls)


@dataclass(frozen=True)
class Recorded:
    request_id: str
    event_timestamp: str
    ingest_timestamp: str
    xproxy_result: dict[str, Any]


def _cost(price: Price) -> dict[str, Any]:
    return {
        "currency": "usd",
        "input": {"base": price.input},
        "output": {"base": price.output},
        "total": {"base": price.total},
    }


def _price(category: str, resource: str | None, units: Units) -> tuple[Price, list[str]]:
    """Price the units; whatever cannot be priced is reported, never silently zero."""
    try:
        price = price_units(category, resource, units)
    except (LookupError, ValueError, TypeError) as exc:
        price = Price(unknown_units={k: dict(v) for k, v in units.items() if any(v.values())})
        return price, [f"pricing failed for resource {resource!r} in category {category!r}: {exc}"]
    if not price.unknown_units:
        return price, []
    keys = ", ".join(sorted(price.unknown_units))
    return price, [
        f"no price known for {keys} of resource {resource!r} in category {category!r}; "
        "those units are listed in unknown_units and not included in cost"
    ]


def _redacted(details: Mapping[str, Any], logging_disabled: bool) -> dict[str, Any]:
    """What is kept of the event's extra fields: no secrets, no payloads when logging is off."""
    kept = {k: v for k, v in details.items() if v is not None and not (logging_disabled and k in LOGGED_FIELDS)}
    for name in ("provider_request_headers", "provider_response_headers"):
        if name in kept:
            kept[name] = [
                {**header, "value": "<redacted>"} if str(header.get("name", "")).lower() in SECRET_HEADERS else header
                for header in kept[name]
            ]
    return kept


def _attribution_result(attribution: Attribution) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if attribution.request_tags:
        result["request_tags"] = list(attribution.request_tags)
    for name in ("use_case_name", "use_case_id", "use_case_step", "user_id", "account_name"):
        value = getattr(attribution, name)
        if value is not None:
            result[name] = value
    return result


class Recorder:
    """Stores events and keeps limits in step, the way Pay-i's ingest and proxy do."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.use_cases: Any = None  # sandbox.use_cases.UseCases: checks (strict mode) and records instances

    def _named_limits(self, db: Any, attribution: Attribution, proxied: bool) -> list[Limit]:
        found = self.store.limits_by_id(db, attribution.limit_ids)
        unknown = [limit_id for limit_id in attribution.limit_ids if limit_id not in found]
        if unknown:
            raise errors.bad_request(
                errors.INVALID_LIMIT_IDS,
                f"unknown limit ID(s): {', '.join(unknown)}; create them first (POST /api/v1/limits)",
            )
        limits = [found[limit_id] for limit_id in attribution.limit_ids]
        if not proxied:
            blocking = [limit.limit_id for limit in limits if limit.limit_type == BLOCK]
            if blocking:
                raise errors.bad_request(
                    errors.BLOCKING_LIMIT_NOT_ALLOWED,
                    f"Block limit(s) {', '.join(blocking)} cannot be named on ingest; "
                    "Block limits work only on proxied requests (use an Allow limit)",
                )
        return limits

    @staticmethod
    def _with_use_case_id(attribution: Attribution) -> Attribution:
        """A use case named without an instance ID gets a new instance, as Pay-i does."""
        if attribution.use_case_name and not attribution.use_case_id:
            return replace(attribution, use_case_id=uuid.uuid4().hex)
        return attribution

    def record(self, event: Event) -> Recorded:
        """Store ``event`` (or acknowledge its duplicate) and return Pay-i's answer for it."""
        proxied = event.source == "proxy"
        price, warnings = _price(event.category, event.resource, event.units)
        attribution = self._with_use_case_id(event.attribution)
        request_id = str(uuid.uuid4())
        now = utc_now()
        with self.store.transaction() as db:
            if self.use_cases is not None:
                attribution = self.use_cases.admit(db, attribution)
            if event.provider_response_id:
                original = self.store.find_duplicate(db, event.category, event.provider_response_id)
                if original is not None:
                    return Recorded(
                        request_id=original["request_id"],
                        event_timestamp=original["event_timestamp"],
                        ingest_timestamp=original["ingest_timestamp"],
                        xproxy_result={**original["xproxy_result"], "duplicate_request": True},
                    )
            limits = self._named_limits(db, attribution, proxied)
            states = {}
            for limit in limits:
                states[limit.limit_id] = limit.add(price.input, price.output, price.total, failed=event.failed)
                limit.updated = iso(now)
                self.store.save_limit(db, limit)
            result: dict[str, Any] = {"request_id": request_id, **_attribution_result(attribution)}
            if states:
                result["limits"] = {limit_id: {"state": state} for limit_id, state in states.items()}
            result["cost"] = _cost(price)
            if price.unknown_units:
                result["unknown_units"] = price.unknown_units
            if warnings:
                result["warnings"] = warnings
            record = self._record(event, attribution, request_id, now, result, price, states)
            self.store.insert_event(db, record)
        return Recorded(request_id, record["event_timestamp"], record["ingest_timestamp"], result)

    def admit(self, event: Event) -> None:
        """Let a proxied call through, or record it as blocked and raise ``limit_reached``.

        A Block limit already past its max refuses the call (``blocked``); every other limit
        named on it reports ``blocked_external``. The provider is not called and nothing is priced.
        """
        attribution = event.attribution
        if self.use_cases is not None and attribution.use_case_name:
            with self.store.transaction() as db:
                self.use_cases.check(db, attribution)
        if not attribution.limit_ids:
            return
        now = utc_now()
        with self.store.transaction() as db:
            limits = self._named_limits(db, attribution, proxied=True)
            blockers = [limit.limit_id for limit in limits if limit.blocks]
            if not blockers:
                return
            attribution = self._with_use_case_id(attribution)
            request_id = str(uuid.uuid4())
            states = {}
            for limit in limits:
                states[limit.limit_id] = BLOCKED if limit.limit_id in blockers else BLOCKED_EXTERNAL
                limit.count(states[limit.limit_id])
                limit.updated = iso(now)
                self.store.save_limit(db, limit)
            result = {
                "request_id": request_id,
                **_attribution_result(attribution),
                "limits": {limit_id: {"state": state} for limit_id, state in states.items()},
                "blocked_limit_ids": blockers,
            }
            blocked = replace(event, units={}, http_status_code=400)
            self.store.insert_event(db, self._record(blocked, attribution, request_id, now, result, Price(), states))
        raise errors.PayiError(
            400,
            errors.LIMIT_REACHED,
            "Insufficient limit for the requested operation",
            result=result,
            summary="Bad Request",
        )

    @staticmethod
    def _record(
        event: Event,
        attribution: Attribution,
        request_id: str,
        now: datetime,
        result: dict[str, Any],
        price: Price,
        states: dict[str, str],
    ) -> dict[str, Any]:
        """The stored event, as ``GET /sandbox/v1/events`` lists it."""
        return {
            "request_id": request_id,
            "source": event.source,
            "category": event.category,
            "resource": event.resource,
            "provider_response_id": event.provider_response_id,
            "units": event.units,
            "cost": {"input": price.input, "output": price.output, "total": price.total},
            "unknown_units": price.unknown_units,
            "limit_ids": list(attribution.limit_ids),
            "limit_states": states,
            "blocked_limit_ids": result.get("blocked_limit_ids", []),
            "http_status_code": event.http_status_code,
            "event_timestamp": iso(event.event_timestamp),
            "ingest_timestamp": iso(now),
            "context": attribution.fields(),
            "details": _redacted(event.details, attribution.logging_disabled),
            "received": _redacted(event.received, attribution.logging_disabled) if event.received is not None else None,
            "xproxy_result": result,
        }
