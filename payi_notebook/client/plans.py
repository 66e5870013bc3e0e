"""Pay-i's REST endpoints as request plans: generators that yield ``Call``s and receive their answers.

Each endpoint is written once here; ``PayiClient`` (sync) and ``AsyncPayiClient`` (async)
execute the same plan, so the two never drift. Arguments are checked when the plan is made,
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .. import limit_rules


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request. A body on an ``accept`` status holding ``accept_key`` is still the answer."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    accept: frozenset[int] = field(default_factory=frozenset)
    accept_key: str | None = None
    text: bool = False  # the answer is the body as text (CSV reports), not JSON


# A request plan: yields calls, receives their parsed answers, returns the result.
Plan = Generator[Call, Any, Any]


def single(call: Call) -> Plan:
    return (yield call)


def segment(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def _check_max(value: Any) -> float:
    limit_rules.check(limit_rules.max_problem(value))
    return float(value)


def _check_name(value: Any) -> str:
    limit_rules.check(limit_rules.name_problem(value))
    return value


def ingest_plan(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Plan:
    if not isinstance(body, Mapping) or not body.get("category") or "units" not in body:
        raise ValueError("an ingest body needs at least 'category' and 'units'; render it with payi_notebook.wire")
    return single(Call("POST", "/ingest", json=dict(body), headers=dict(headers or {})))


def ingest_bulk_plan(items: Sequence[Mapping[str, Any]]) -> Plan:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("bulk ingest needs a non-empty list of items")
    items_json = [dict(item) for item in items]
    return single(Call("POST", "/ingest/bulk", json=items_json, accept=frozenset({400}), accept_key="ingest_count"))


def list_limits_plan(name: str | None = None, page_size: int = 100) -> Plan:
    if name is not None and not isinstance(name, str):
        raise ValueError(f"limit name filter must be a string, got {name!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    return pages("/limits", {"limit_name": name or None}, page_size)


def pages(path: str, params: Mapping[str, Any], page_size: int = 100) -> Plan:
    """Every item of a cursor-paginated list route (``params`` that are None are left out)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {k: v for k, v in params.items() if v is not None}
        query["limit"] = page_size
        if cursor:
            query["cursor"] = cursor
        page = yield Call("GET", path, params=query)
        batch = (page or {}).get("items") or []
        items.extend(batch)
        next_cursor = (page or {}).get("cursor")
        if not batch or not next_cursor or next_cursor == cursor:
            return items
        cursor = next_cursor


def create_limit_plan(
    name: str,
    max: float,
    limit_type: str = "allow",
    threshold: float | None = None,
    limit_id: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> Plan:
    body: dict[str, Any] = {"limit_name": _check_name(name), "max": _check_max(max)}
    limit_rules.check(limit_rules.type_problem(limit_type))
    body["limit_type"] = limit_type
    if threshold is not None:
        limit_rules.check(limit_rules.threshold_problem(threshold))
        body["threshold"] = float(threshold)
    if limit_id is not None:
        limit_rules.check(limit_rules.id_problem(limit_id))
        body["limit_id"] = limit_id
    if properties is not None:
        if not isinstance(properties, Mapping) or not all(isinstance(k, str) and k for k in properties):
            raise ValueError("properties must be a mapping of non-empty string keys to strings")
        body["properties"] = {k: None if v is None else str(v) for k, v in properties.items()}
    return single(Call("POST", "/limits", json=body))


def update_limit_plan(limit_id: str, max: float | None = None, name: str | None = None) -> Plan:
    path = f"/limits/{segment('limit_id', limit_id)}"
    if max is None and name is None:
        raise ValueError("update_limit needs max=... or name=...")
    body: dict[str, Any] = {}
    if max is not None:
        body["max"] = _check_max(max)
    if name is not None:
        body["limit_name"] = _check_name(name)
    return single(Call("PUT", path, json=body))


def limit_plan(method: str, limit_id: str, suffix: str = "") -> Plan:
    """GET / DELETE a limit, or POST its ``/reset``."""
    return single(Call(method, f"/limits/{segment('limit_id', limit_id)}{suffix}"))


def request_result_plan(request_id: str) -> Plan:
    return single(Call("GET", f"/requests/{segment('request_id', request_id)}/result"))


def provider_result_plan(category: str, provider_response_id: str) -> Plan:
    pid = segment("provider_response_id", provider_response_id)
    return single(Call("GET", f"/requests/provider/{segment('category', category)}/{pid}/result"))
