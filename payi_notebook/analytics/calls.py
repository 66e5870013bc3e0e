"""One way to call Pay-i for the analytics modules: a fresh client, Pay-i's refusal as one line with a hint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..client import PayiClient, PayiError
from ..context import ContextError, check_use_case_name

T = TypeVar("T")
ClientFactory = Callable[[], PayiClient]  # a shared client; callers never close it

HINTS = {
    "use_case_not_found": "define it with pn.use_cases.create(name, description=...)",
    "use_case_already_exists": "it is already defined; pn.use_cases.get(name) shows it",
    "kpi_not_found": "define it with pn.kpis.create(use_case, name, type=..., goal=...)",
    "kpi_already_exists": "it is already defined; pn.kpis.list(use_case) shows the KPIs",
    "use_case_instance_not_found": "the instance id is unknown to Pay-i; pn.outcomes() lists the ledger's instances",
    "request_not_found": "Pay-i has no such request yet; pn.flush() sends what is pending",
    "invalid_kpi_score": "pick a score in the KPI type's range (boolean 0/1, percentage 0-100, likertN 1-N)",
}


class AnalyticsError(ValueError):
    """Pay-i refused a use case, KPI, property or report call, or an argument was invalid. ``code``: Pay-i's."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def call(client: ClientFactory, what: str, fn: Callable[[PayiClient], T], hints: Mapping[str, str] = HINTS) -> T:
    """``fn(client())`` with Pay-i's refusals and bad arguments raised as ``AnalyticsError``.

    ``client`` hands out a long-lived client (``Session.shared_client``): one round trip should
    not pay for a new connection and TLS set-up.
    """
    try:
        return fn(client())
    except PayiError as exc:
        hint = hints.get(exc.code or "")
        detail = f" ({exc.code}; {hint})" if hint else f" ({exc.code})" if exc.code else ""
        raise AnalyticsError(f"could not {what}: {exc.message}{detail}", exc.code) from None
    except ValueError as exc:
        raise AnalyticsError(f"could not {what}: {exc}") from None


def use_case_name(value: Any) -> str:
    """A valid use case name (the rule ``%%payi --use-case`` applies), else ``AnalyticsError``."""
    if not isinstance(value, str) or not value:
        raise AnalyticsError(f"use case name must be a non-empty string, got {value!r}")
    try:
        check_use_case_name(value)
    except ContextError as exc:
        raise AnalyticsError(str(exc)) from None
    return value
