"""Reading Pay-i's ``xproxy_result``: the one place that knows its shape.

Pay-i returns it from ``/ingest``, from the proxy (as a body field or an SSE event) and from the
result lookup. Every reader (capture, delivery, the ledger, limits, the result view) asks here,
so a change in the shape is one edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def of_body(body: Any) -> dict[str, Any] | None:
    """The ``xproxy_result`` a JSON response body carries, or None."""
    if isinstance(body, Mapping):
        result = body.get("xproxy_result")
        if isinstance(result, dict):
            return result
    return None


def cost(result: Any) -> float | None:
    """Pay-i's total for one call; None when there is none.

    A total of 0 that comes with ``unknown_units`` means Pay-i has no price for the model, not
    that the call was free: it is no cost at all, so every view says "unpriced".
    """
    if not isinstance(result, Mapping):
        return None
    total = ((result.get("cost") or {}).get("total") or {}).get("base")
    if not isinstance(total, (int, float)) or isinstance(total, bool):
        return None
    if total == 0 and result.get("unknown_units"):
        return None
    return float(total)


def cost_parts(result: Any) -> tuple[dict[str, float], str | None]:
    """Pay-i's cost by part (``input``, ``output``, ``total``, ``overrun``: base amounts present) and its currency."""
    cost = result.get("cost") if isinstance(result, Mapping) else None
    if not isinstance(cost, Mapping):
        return {}, None
    parts: dict[str, float] = {}
    for key in ("input", "output", "total"):
        part = cost.get(key)
        base = part.get("base") if isinstance(part, Mapping) else None
        if isinstance(base, (int, float)) and not isinstance(base, bool):
            parts[key] = float(base)
    total = cost.get("total")
    overrun = total.get("overrun_base") if isinstance(total, Mapping) else None
    if isinstance(overrun, (int, float)) and not isinstance(overrun, bool) and overrun:
        parts["overrun"] = float(overrun)
    currency = cost.get("currency")
    return parts, str(currency) if currency else None


def request_id(result: Any) -> str | None:
    """The Pay-i request id, when it is a string."""
    value = result.get("request_id") if isinstance(result, Mapping) else None
    return value if isinstance(value, str) else None


def limit_states(result: Any) -> dict[str, str]:
    """Limit id -> state (``ok``, ``exceeded``, ``overrun``, ``blocked``...) for the limits it names."""
    limits = result.get("limits") if isinstance(result, Mapping) else None
    if not isinstance(limits, Mapping):
        return {}
    out: dict[str, str] = {}
    for limit_id, status in limits.items():
        state = status.get("state", status.get("State")) if isinstance(status, Mapping) else status
        if isinstance(state, str):
            out[str(limit_id)] = state
    return out


def blocked_limit_ids(result: Any) -> list[str]:
    """The Block limits that stopped the call (empty when none did)."""
    ids = result.get("blocked_limit_ids") if isinstance(result, Mapping) else None
    return [str(i) for i in ids] if isinstance(ids, list) else []
