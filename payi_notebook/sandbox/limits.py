"""Limit arithmetic: Pay-i's states, counters and the rules a limit's settings must satisfy.

States (docs: limits, proxy configuration): ``ok`` below the risk threshold (max × threshold),
``exceeded`` from the threshold up to and including max, ``overrun`` above max. A Block limit
in overrun refuses later proxied calls: the refusing limit reports ``blocked``, the other
limits named on that call ``blocked_external``. ``failed`` marks a call the provider failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..limit_rules import THRESHOLD_MAX, max_problem, name_problem, threshold_problem
from . import errors

OK = "ok"
EXCEEDED = "exceeded"
OVERRUN = "overrun"
BLOCKED = "blocked"
BLOCKED_EXTERNAL = "blocked_external"
FAILED = "failed"
STATES = (OK, EXCEEDED, OVERRUN, BLOCKED, BLOCKED_EXTERNAL, FAILED)

ALLOW = "allow"
BLOCK = "block"

DEFAULT_THRESHOLD = THRESHOLD_MAX
# Spend is a float sum of small prices: compare with a tolerance far below a micro-dollar.
EPSILON = 1e-12


def state_for(spend: float, maximum: float, threshold: float | None) -> str:
    """The state a limit is in at ``spend``."""
    if spend - maximum > EPSILON:
        return OVERRUN
    risk = maximum * (DEFAULT_THRESHOLD if threshold is None else threshold)
    if spend - risk >= -EPSILON:
        return EXCEEDED
    return OK


def check_max(value: Any, code: str) -> float:
    """``max`` by Pay-i's rule (``limit_rules``): a number (``code``), above zero (``invalid_max_limit``)."""
    problem = max_problem(value)
    if problem is not None:
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        raise errors.bad_request(errors.INVALID_MAX_LIMIT if number else code, f"max: {problem}")
    return float(value)


def check_threshold(value: Any) -> float | None:
    """``threshold``: the risk fraction of max (``limit_rules``; absent means 1.0)."""
    problem = threshold_problem(value)
    if problem is not None:
        raise errors.bad_request(errors.CREATE_LIMIT_FAILED, f"threshold: {problem}")
    return None if value is None else float(value)


def check_name(value: Any, code: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise errors.bad_request(code, f"limit_name: {problem}")
    return value


def empty_counters() -> dict[str, int]:
    return {name: 0 for name in (*STATES, "total")}


@dataclass
class Limit:
    """One limit and its running totals, as stored."""

    limit_id: str
    limit_name: str
    max: float
    threshold: float | None
    limit_type: str
    created: str
    updated: str
    properties: dict[str, Any] | None = None
    cost_input: float = 0.0
    cost_output: float = 0.0
    cost_total: float = 0.0
    requests: dict[str, int] = field(default_factory=empty_counters)

    @property
    def state(self) -> str:
        return state_for(self.cost_total, self.max, self.threshold)

    @property
    def blocks(self) -> bool:
        """A Block limit already past its max refuses the next proxied call."""
        return self.limit_type == BLOCK and self.state == OVERRUN

    def add(self, cost_input: float, cost_output: float, cost_total: float, failed: bool = False) -> str:
        """Add one request's cost, count it under the resulting state, and return that state."""
        self.cost_input += cost_input
        self.cost_output += cost_output
        self.cost_total += cost_total
        state = FAILED if failed else self.state
        self.count(state)
        return state

    def count(self, state: str) -> None:
        self.requests[state] += 1
        self.requests["total"] += 1

    def reset(self) -> None:
        self.cost_input = self.cost_output = self.cost_total = 0.0
        self.requests = empty_counters()

    def totals(self) -> dict[str, Any]:
        """``TotalCostData``: spend so far (with the part above max as ``overrun_base``) and counters."""
        return {
            "cost": {
                "input": {"base": self.cost_input},
                "output": {"base": self.cost_output},
                "total": {"base": self.cost_total, "overrun_base": max(self.cost_total - self.max, 0.0)},
            },
            "requests": dict(self.requests),
        }

    def wire(self) -> dict[str, Any]:
        """The spec's ``Limit`` object."""
        body: dict[str, Any] = {
            "limit_id": self.limit_id,
            "limit_name": self.limit_name,
            "max": self.max,
            "limit_type": self.limit_type,
            "limit_creation_timestamp": self.created,
            "totals": self.totals(),
            "limit_update_timestamp": self.updated,
        }
        if self.threshold is not None:
            body["threshold"] = self.threshold
        return body

    def same_settings(self, maximum: float, threshold: float | None, limit_type: str, name: str) -> bool:
        """Whether a create with these values asks for exactly this limit (idempotent create)."""
        return (
            self.max == maximum
            and (self.threshold or DEFAULT_THRESHOLD) == (threshold or DEFAULT_THRESHOLD)
            and self.limit_type == limit_type
            and self.limit_name == name
        )
