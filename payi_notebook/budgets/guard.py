"""The budget step of capture: admit a call before it is sent, settle it when it ends.

``admit`` runs on the request path only when a budget applies (the hooks check one tuple and
one field otherwise). It bounds the call, reserves the bound in every applicable budget —
all or none: a refusal by one releases the others — and on refusal records the call in the
ledger as ``refused_budget`` (cost 0; it never reaches the provider or Pay-i) and raises
``BudgetExceeded``. ``settle`` gives each budget the call's actual cost.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from ..events import UsageEvent
from .bounds import CallBound, actual_cost, request_bound
from .reservation import BudgetExceeded, BudgetWarning, Refusal, Reserver

if TYPE_CHECKING:
    from ..capture.exchange import Exchange


@dataclass(slots=True)
class Hold:
    """The reservations one call holds."""

    reservers: tuple[Reserver, ...]
    bound: CallBound


def reservers_for(x: Exchange) -> tuple[Reserver, ...]:
    session = x.config.session_budget
    own = x.scope.budgets
    return (*own, session) if session is not None else own


def admit(x: Exchange, raw: bytes | None) -> Hold:
    """Reserve the call's bound in every budget that applies, or refuse it (raises)."""
    reservers = reservers_for(x)
    try:
        body = orjson.loads(raw) if raw else None
        bound = request_bound(x.route.provider, x.route.operation, body, raw or b"")
    except Exception as exc:  # under a budget an unbounded call is refused, never sent unguarded
        x.report("bounding a call's cost failed; the call was refused under its budget", exc)
        bound = CallBound(None, None, None, "none", "none", math.inf, f"payi_notebook could not read the request: {exc!r}")
    held: list[Reserver] = []
    for reserver in reservers:
        try:
            refusal = reserver.reserve(x.event_id, bound.usd)
        except BaseException:
            _release(held, x.event_id)
            raise
        if refusal is not None:
            _release(held, x.event_id)
            _refuse(x, bound, refusal)
        held.append(reserver)
    return Hold(tuple(held), bound)


def _release(held: list[Reserver], key: str) -> None:
    for reserver in held:
        reserver.settle(key, 0.0)


def _refuse(x: Exchange, bound: CallBound, refusal: Refusal) -> None:
    if bound.reason is not None:
        refusal = Refusal(refusal.label, refusal.budget, refusal.spent, refusal.reserved, refusal.bound, bound.reason)
    exc = BudgetExceeded(refusal, _hint(refusal))
    record = x.config.record_refusal
    if record is not None:
        try:
            record(_refused_event(x, bound, str(exc)), x.scope)
        except Exception as inner:
            x.report("recording a refused call failed", inner)
    raise exc


def _hint(r: Refusal) -> str:
    if r.label.startswith("session"):
        return "raise the session budget (pn.configure(session_budget=...)) or lower max_tokens"
    if r.label.startswith("cell"):
        return "raise --budget on the cell, or lower max_tokens"
    return "raise budget=..., or lower max_tokens"


def _refused_event(x: Exchange, bound: CallBound, message: str) -> UsageEvent:
    scope = x.scope
    event = UsageEvent(
        provider=x.route.provider,
        category=x.route.spec.category,
        operation=x.route.operation,
        resource=bound.model or x.model,
        mode=x.mode,
        streaming=x.streaming,
        event_id=x.event_id,
        timestamp=x.timestamp,
        status="refused_budget",
        error=message,
        context=x.context,
        execution_count=scope.execution_count,
        cell_id=scope.cell_id,
        provider_uri=x.route.base,
        est_cost_usd=0.0,
    )
    event.provider_response_id = f"payi_{x.event_id}"
    return event


def settle(x: Exchange) -> None:
    """The call ended (finished, failed, cut short or dropped): settle each hold at its actual cost."""
    hold = x.hold
    if hold is None:
        return
    x.hold = None
    try:
        event = x.event()
        cost = event.payi_cost_usd
        if cost is None:
            cost = actual_cost(event.category, event.resource, event.units)
    except Exception as exc:
        x.report("pricing a call for its budget failed; its bound was counted", exc)
        cost = math.nan
    for reserver in hold.reservers:
        try:
            crossed = reserver.settle(x.event_id, cost)
        except Exception as exc:
            x.report(f"settling the {reserver.label} failed", exc)
            continue
        for threshold in crossed:
            _warn(reserver, threshold)


def _warn(reserver: Reserver, threshold: float) -> None:
    state = reserver.state()
    message = f"payi: {state.label} {threshold:.0%} used: ${state.spent:.4f} of ${state.budget or 0:.4f} spent"
    # no user frame to point at (the call is deep in an SDK): one line, filterable by category or module
    warnings.warn_explicit(BudgetWarning(message), BudgetWarning, "payi_notebook", 0, module="payi_notebook")
