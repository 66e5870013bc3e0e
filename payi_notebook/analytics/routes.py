"""Request plans for Pay-i's use case, KPI, request-property and report routes.

Each is a ``client.Plan`` that ``PayiClient.run`` (or ``AsyncPayiClient.run``) executes, so
these routes share the client's auth, error mapping and key scrubbing. Arguments are checked
here, before anything is sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..client.plans import Call, Plan, pages, segment, single
from ..limit_rules import LIMIT_TYPES

AUTO_DESCRIPTION = "Defined by payi_notebook when Pay-i first saw this use case name"
KPI_TYPES = ("boolean", "number", "percentage", "likert5", "likert7", "likert10")


def text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def properties(value: Any) -> dict[str, str | None]:
    if not isinstance(value, Mapping) or not value or not all(isinstance(k, str) and k for k in value):
        raise ValueError("properties must be a non-empty mapping of string keys to strings (None removes a key)")
    return {k: None if v is None else str(v) for k, v in value.items()}


def limit_config(
    max: Any, limit_type: str = "allow", threshold: float | None = None, props: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A ``CreateLimitBase`` body: the limit every new instance of a use case gets."""
    if isinstance(max, bool) or not isinstance(max, (int, float)) or not math.isfinite(max) or max <= 0:
        raise ValueError(f"max must be a positive amount in USD, got {max!r}")
    if limit_type not in LIMIT_TYPES:
        raise ValueError(f"limit_type must be 'allow' or 'block', got {limit_type!r}")
    body: dict[str, Any] = {"max": float(max), "limit_type": limit_type}
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValueError(f"threshold must be a fraction of max in (0, 1], e.g. 0.8, got {threshold!r}")
        body["threshold"] = float(threshold)
    if props:
        body["properties"] = properties(props)
    return body


def _definition(name: str, suffix: str = "") -> str:
    return f"/use_cases/definitions/{segment('use_case_name', name)}{suffix}"


def _instance(name: str, use_case_id: str, suffix: str = "") -> str:
    return f"/use_cases/instances/{segment('use_case_name', name)}/{segment('use_case_id', use_case_id)}{suffix}"


def _kpi(name: str) -> str:
    return f"/kpis/{segment('KPI name', name)}"


# ---- use case definitions and instances ---------------------------------------------------


def list_use_cases(name: str | None = None) -> Plan:
    return pages("/use_cases/definitions", {"use_case_name": name})


def create_use_case(
    name: str, description: str, logging_enabled: bool | None = None, limit: Mapping[str, Any] | None = None
) -> Plan:
    body: dict[str, Any] = {"name": text("use case name", name), "description": text("description", description)}
    if logging_enabled is not None:
        body["logging_enabled"] = bool(logging_enabled)
    if limit is not None:
        body["limit_config"] = dict(limit)
    return single(Call("POST", "/use_cases/definitions", json=body))


def update_use_case(name: str, description: str | None = None, logging_enabled: bool | None = None) -> Plan:
    if description is None and logging_enabled is None:
        raise ValueError("updating a use case needs description=... and/or logging_enabled=...")
    body: dict[str, Any] = {}
    if description is not None:
        body["description"] = text("description", description)
    if logging_enabled is not None:
        body["logging_enabled"] = bool(logging_enabled)
    return single(Call("PUT", _definition(name), json=body))


def use_case(method: str, name: str, suffix: str = "") -> Plan:
    """GET / DELETE a definition, POST its ``/increment_version``, DELETE its ``/limit_config``."""
    return single(Call(method, _definition(name, suffix)))


def create_use_case_limit(name: str, body: Mapping[str, Any]) -> Plan:
    return single(Call("POST", _definition(name, "/limit_config"), json=dict(body)))


def instance(method: str, name: str, use_case_id: str | None = None) -> Plan:
    """POST a new instance (no id), or GET / DELETE one."""
    if use_case_id is None:
        return single(Call(method, f"/use_cases/instances/{segment('use_case_name', name)}"))
    return single(Call(method, _instance(name, use_case_id)))


# ---- KPIs ------------------------------------------------------------------------------


def list_kpis(use_case_name: str) -> Plan:
    return pages(_definition(use_case_name, "/kpis"), {})


def create_kpi(use_case_name: str, name: str, kpi_type: str, goal: float, description: str) -> Plan:
    if kpi_type not in KPI_TYPES:
        raise ValueError(f"kpi type must be one of {', '.join(KPI_TYPES)}, got {kpi_type!r}")
    body = {
        "name": text("KPI name", name),
        "description": text("description", description),
        "kpi_type": kpi_type,
        "goal": number("goal", goal),
    }
    return single(Call("POST", _definition(use_case_name, "/kpis"), json=body))


def update_kpi(use_case_name: str, name: str, description: str | None = None, goal: float | None = None) -> Plan:
    if description is None and goal is None:
        raise ValueError("updating a KPI needs description=... and/or goal=...")
    body: dict[str, Any] = {}
    if description is not None:
        body["description"] = text("description", description)
    if goal is not None:
        body["goal"] = number("goal", goal)
    return single(Call("PUT", _definition(use_case_name, _kpi(name)), json=body))


def kpi(method: str, use_case_name: str, name: str) -> Plan:
    """GET / DELETE a KPI definition."""
    return single(Call(method, _definition(use_case_name, _kpi(name))))


def score_kpi(use_case_name: str, use_case_id: str, name: str, score: float | bool) -> Plan:
    # Always a JSON float (or bool): the spec's ``oneOf [integer, number]`` refuses a bare integer.
    value = score if isinstance(score, bool) else number("score", score)
    return single(Call("PUT", _instance(use_case_name, use_case_id, _kpi(name)), json={"score": value}))


def instance_kpis(use_case_name: str, use_case_id: str, name: str | None = None) -> Plan:
    return pages(_instance(use_case_name, use_case_id, "/kpis"), {"kpi_name": name})


# ---- request properties, reports -------------------------------------------------------


def request_properties(request_id: str, props: Mapping[str, str | None]) -> Plan:
    path = f"/requests/{segment('request_id', request_id)}/properties"
    return single(Call("PUT", path, json={"properties": properties(props)}))


def provider_properties(category: str, provider_response_id: str, props: Mapping[str, str | None]) -> Plan:
    path = (
        f"/requests/provider/{segment('category', category)}/"
        f"{segment('provider_response_id', provider_response_id)}/properties"
    )
    return single(Call("PUT", path, json={"properties": properties(props)}))


def report(report_id: str, start: str | None = None, end: str | None = None) -> Plan:
    """``GET /reports/{id}?from&to`` (``from`` inclusive, ``to`` exclusive): the report as CSV text."""
    params = {key: value for key, value in (("from", start), ("to", end)) if value is not None}
    return single(Call("GET", f"/reports/{segment('report_id', report_id)}", params=params or None, text=True))
