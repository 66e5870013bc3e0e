"""``pn.limits``: Pay-i budgets (Allow and Block limits) from a notebook.

A thin, validated face over the Limits API: tables come back as pandas DataFrames, single
limits as ``Limit`` objects that display nicely. Errors from Pay-i become ``LimitError``
with its code and one line saying what to do; bad arguments are refused before anything
is sent.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import limit_rules
from .client import PayiClient, PayiError
from .limit_rules import LIMIT_TYPES
COLUMNS = [
    "limit_id",
    "limit_name",
    "limit_type",
    "max",
    "threshold",
    "spent",
    "state",
    "requests",
    "blocked",
    "overrun",
    "created",
    "updated",
]


class LimitError(ValueError):
    """Pay-i refused a limit operation, or an argument was invalid. ``code`` is Pay-i's error code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def state_of(spent: float, max_usd: float, threshold: float | None) -> str:
    """Pay-i's state for a spend: ``ok``, ``exceeded`` (at the risk threshold) or ``overrun`` (past max)."""
    if spent > max_usd:
        return "overrun"
    if spent >= max_usd * (threshold if threshold is not None else 1.0):
        return "exceeded"
    return "ok"


@dataclass(frozen=True)
class Limit:
    """One limit as Pay-i reports it; ``spent`` is its total cost so far (USD)."""

    limit_id: str
    limit_name: str
    limit_type: str
    max: float
    threshold: float | None
    spent: float
    requests: dict[str, int]
    created: str | None = None
    updated: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Limit:
        totals = data.get("totals") or {}
        cost = ((totals.get("cost") or {}).get("total") or {}).get("base") or 0.0
        return cls(
            limit_id=data["limit_id"],
            limit_name=data["limit_name"],
            limit_type=data.get("limit_type") or "allow",
            max=float(data["max"]),
            threshold=data.get("threshold"),
            spent=float(cost),
            requests=dict(totals.get("requests") or {}),
            created=data.get("limit_creation_timestamp"),
            updated=data.get("limit_update_timestamp"),
        )

    @property
    def state(self) -> str:
        return state_of(self.spent, self.max, self.threshold)

    @property
    def remaining(self) -> float:
        return max(self.max - self.spent, 0.0)

    def row(self) -> dict[str, Any]:
        return {
            "limit_id": self.limit_id,
            "limit_name": self.limit_name,
            "limit_type": self.limit_type,
            "max": self.max,
            "threshold": self.threshold if self.threshold is not None else math.nan,
            "spent": self.spent,
            "state": self.state,
            "requests": self.requests.get("total", 0),
            "blocked": self.requests.get("blocked", 0),
            "overrun": self.requests.get("overrun", 0),
            "created": pd.to_datetime(self.created, utc=True) if self.created else pd.NaT,
            "updated": pd.to_datetime(self.updated, utc=True) if self.updated else pd.NaT,
        }

    def describe(self) -> str:
        """One line: name, type, spend against max, state."""
        return (
            f"{self.limit_name} ({self.limit_id}, {self.limit_type}): "
            f"${self.spent:.4f} of ${self.max:.4f} spent, {self.state}"
        )

    def __repr__(self) -> str:
        return f"Limit({self.describe()})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(self.describe())}</code>"


def _checked(problem: str | None) -> None:
    if problem is not None:
        raise LimitError(problem)


def _check_max(value: Any) -> float:
    _checked(limit_rules.max_problem(value))
    return float(value)


def _check_type(value: Any) -> str:
    if value not in LIMIT_TYPES:
        raise LimitError(f"limit type must be 'allow' or 'block', got {value!r}")
    return value


def _check_threshold(value: Any) -> float | None:
    _checked(limit_rules.threshold_problem(value))
    return None if value is None else float(value)


def _check_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LimitError(f"limit id must be a non-empty string, got {value!r}")
    return value


_HINTS = {
    "limit_not_found": "check the id with pn.limits.list()",
    "limit_name_already_exist": "choose another name, or update the existing limit",
    "invalid_max_limit_update": "the new max is below what was already spent; reset the limit first or pick a higher max",
    "invalid_max_limit": "use a larger max",
}


class Limits:
    """Budgets on the configured Pay-i endpoint (or the sandbox)."""

    def __init__(self, client: Callable[[], PayiClient]) -> None:
        self._client = client

    def _call(self, what: str, fn: Callable[[PayiClient], Any]) -> Any:
        client = self._client()
        try:
            return fn(client)
        except PayiError as exc:
            hint = _HINTS.get(exc.code or "")
            message = f"could not {what}: {exc.message}" + (f" ({exc.code}; {hint})" if hint else f" ({exc.code})" if exc.code else "")
            raise LimitError(message, exc.code) from None
        except ValueError as exc:
            raise LimitError(str(exc)) from None
        finally:
            client.close()

    def all(self, name: str | None = None) -> list[Limit]:
        """Every limit (optionally only those named ``name``) as ``Limit`` objects."""
        return [Limit.from_api(item) for item in self._call("list limits", lambda c: c.list_limits(name))]

    def list(self, name: str | None = None) -> pd.DataFrame:
        """Every limit as a DataFrame: spend, max, state and request counters per limit."""
        rows = [limit.row() for limit in self.all(name)]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        return frame.astype({"max": "float64", "threshold": "float64", "spent": "float64"})

    def get(self, limit_id: str) -> Limit:
        limit_id = _check_id(limit_id)
        return Limit.from_api(self._call(f"get limit {limit_id!r}", lambda c: c.get_limit(limit_id))["limit"])

    def create(
        self,
        name: str,
        max: float,
        type: str = "allow",
        threshold: float | None = None,
        limit_id: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> Limit:
        """Create an ``allow`` or ``block`` limit of ``max`` USD (``threshold``: risk level as a fraction of max)."""
        _checked(limit_rules.name_problem(name))
        if limit_id is not None:
            _checked(limit_rules.id_problem(limit_id))
        args = (name, _check_max(max), _check_type(type), _check_threshold(threshold), limit_id, properties)
        answer = self._call(f"create limit {name!r}", lambda c: c.create_limit(*args))
        return Limit.from_api(answer["limit"])

    def update(self, limit_id: str, max: float | None = None, name: str | None = None) -> Limit:
        """Change a limit's max (USD) and/or name."""
        limit_id = _check_id(limit_id)
        if max is None and name is None:
            raise LimitError("update needs a new max and/or name")
        new_max = _check_max(max) if max is not None else None
        answer = self._call(f"update limit {limit_id!r}", lambda c: c.update_limit(limit_id, new_max, name))
        return Limit.from_api(answer["limit"])

    def reset(self, limit_id: str) -> Limit:
        """Set a limit's spend back to $0 (Pay-i keeps the history); returns the limit afterwards."""
        limit_id = _check_id(limit_id)
        self._call(f"reset limit {limit_id!r}", lambda c: c.reset_limit(limit_id))
        return self.get(limit_id)

    def delete(self, limit_id: str) -> None:
        limit_id = _check_id(limit_id)
        self._call(f"delete limit {limit_id!r}", lambda c: c.delete_limit(limit_id))

    def __repr__(self) -> str:
        return "pn.limits: .list() .get(id) .create(name, max, type='allow'|'block', threshold=None) .update(id, max=, name=) .reset(id) .delete(id)"
