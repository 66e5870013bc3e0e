"""Sandbox-side fault injection: make the next N matching Pay-i requests fail on purpose.

Clients need to be tested against 429s and 5xx with ``Retry-After`` (retry, backoff, spool).
A fault answers before anything is stored, with a Pay-i error body.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from . import errors

ROUTES = ("ingest", "bulk", "proxy", "limits", "requests", "use_cases", "*")
FIELDS = {"route", "status", "count", "retry_after"}


@dataclass
class Fault:
    route: str
    status: int
    count: int
    retry_after: float | None = None

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"route": self.route, "status": self.status, "count": self.count}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body

    def error(self) -> errors.PayiError:
        headers = None
        if self.retry_after is not None:
            headers = {"Retry-After": str(math.ceil(self.retry_after))}
        code = errors.RATE_LIMITED if self.status == 429 else errors.UNEXPECTED_ERROR
        return errors.PayiError(
            self.status, code, f"injected fault: HTTP {self.status} (sandbox fault injection)", headers=headers
        )


def parse_fault(body: Any) -> Fault:
    """A fault from ``POST /sandbox/v1/faults``; refuses anything it would misread."""
    if not isinstance(body, dict):
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, 'fault: send a JSON object like {"route": "ingest", "status": 503}'
        )
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, f"{unknown[0]}: unknown field (use {', '.join(sorted(FIELDS))})"
        )
    route = body.get("route", "*")
    if route not in ROUTES:
        raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, f"route: {route!r} is not one of {', '.join(ROUTES)}")
    status = body.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, f"status: {status!r} must be an HTTP error status (400-599)"
        )
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, f"count: {count!r} must be a positive integer")
    retry_after = body.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)) or not 0 <= retry_after < math.inf
    ):
        raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, f"retry_after: {retry_after!r} must be seconds >= 0")
    return Fault(route, status, count, None if retry_after is None else float(retry_after))


class Faults:
    """Pending faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def clear(self) -> int:
        with self._lock:
            cleared = len(self._pending)
            self._pending.clear()
            return cleared

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._pending)

    def take(self, route: str) -> Fault | None:
        """The fault this request on ``route`` must get, if any (counting it down)."""
        if not self._pending:
            return None
        with self._lock:
            for fault in self._pending:
                if fault.route in (route, "*"):
                    fault.count -= 1
                    if fault.count == 0:
                        self._pending.remove(fault)
                    return fault
        return None
