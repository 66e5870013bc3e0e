"""``pn.limits``: Pay-i budgets (Allow and Block limits) from a notebook.

A thin, validated face over the Limits API: tables come back as pandas DataFrames, single
limits as ``Limit`` objects that display nicely. Errors from Pay-i become ``LimitError``
with its code and one line saying what to do; bad arguments are refused before anything
is sent.

Wherever a limit id is expected (``--limit``, ``limit_ids=``, ``.get``/``.update``/...), a
limit's unique name works too: ``pn.limits.create("team-q4", ...)`` lets Pay-i pick the id,
and ``limit_ids=["team-q4"]`` then means that limit. An id always means its own limit; a
name is looked up only when no limit has that id. Answers are cached for the session.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import limit_rules
from .client import PayiClient, PayiError, PayiUnavailable

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
    _checked(limit_rules.type_problem(value))
    return value


def _check_threshold(value: Any) -> float | None:
    _checked(limit_rules.threshold_problem(value))
    return None if value is None else float(value)


def _check_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LimitError(f"limit id must be a non-empty string, got {value!r}")
    return value


def _lookup(client: PayiClient, value: str) -> str | PayiError:
    """The id ``value`` stands for: itself if a limit has that id, else the limit of that name.

    LimitError when Pay-i says no limit, or several, match; Pay-i's error when it could not
    say (unreachable, 5xx, a refused key): then the caller keeps the value as an id.
    """
    try:
        try:
            return str(client.get_limit(value)["limit"]["limit_id"])
        except PayiError as exc:
            if isinstance(exc, PayiUnavailable) or (exc.code != "limit_not_found" and exc.status != 404):
                raise
        named = [item for item in client.list_limits(value) if item.get("limit_name") == value]
    except PayiError as exc:
        return exc
    if not named:
        raise LimitError(
            f"unknown limit {value[:80]!r}: no limit has this id or name; see pn.limits.list(), "
            "or create it with pn.limits.create(name, max)",
            "limit_not_found",
        )
    if len(named) > 1:
        ids = ", ".join(repr(item["limit_id"]) for item in named)
        raise LimitError(f"limit name {value!r} is ambiguous ({len(named)} limits: {ids}); give the id instead")
    return str(named[0]["limit_id"])


_HINTS = {
    "limit_not_found": "check the id with pn.limits.list()",
    "limit_name_already_exist": "choose another name, or update the existing limit",
    "invalid_max_limit_update": "the new max is below what was already spent; reset the limit first or pick a higher max",
    "invalid_max_limit": "use a larger max",
}


class Limits:
    """Budgets on the configured Pay-i endpoint (or the sandbox).

    ``ids``: where resolved names and ids are cached (the session's, emptied when its endpoint
    changes); by default this object's own.
    """

    def __init__(self, client: Callable[[], PayiClient], ids: Callable[[], dict[str, str]] | None = None) -> None:
        self._client = client
        own: dict[str, str] = {}
        self._ids = ids or (lambda: own)

    def resolve(self, values: Iterable[str], report: Callable[[str], None] | None = None) -> tuple[str, ...]:
        """Limit ids for ``values``, each an id or a unique name (see the module docstring).

        Raises LimitError for a value that is neither, or a name several limits share. If
        Pay-i cannot say (unreachable, failing), a value is kept as given (an id), not cached,
        and ``report`` is told why: a lookup never stops a cell for Pay-i's own trouble.
        """
        cache = self._ids()
        out: list[str] = []
        missing = [v for v in dict.fromkeys(values) if v not in cache]
        if missing:
            client = self._client()
            try:
                for value in missing:
                    found = _lookup(client, value)
                    if isinstance(found, PayiError):
                        if report is not None:
                            report(f"could not check limit {value[:80]!r} with Pay-i ({found}); it is sent as an id")
                        continue
                    cache[value] = found
            finally:
                client.close()
        for value in values:
            limit_id = cache.get(value, value)
            if limit_id not in out:
                out.append(limit_id)
        return tuple(out)

    def _id(self, value: Any) -> str:
        return self.resolve([_check_id(value)])[0]

    def _forget(self) -> None:
        self._ids().clear()

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
        """One limit, by id or unique name."""
        limit_id = self._id(limit_id)
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
        self._forget()  # its name may have been unknown (or its id a name) until now
        return Limit.from_api(answer["limit"])

    def update(self, limit_id: str, max: float | None = None, name: str | None = None) -> Limit:
        """Change a limit's max (USD) and/or name (the limit: by id or unique name)."""
        if max is None and name is None:
            raise LimitError("update needs a new max and/or name")
        new_max = _check_max(max) if max is not None else None
        if name is not None:
            _checked(limit_rules.name_problem(name))
        limit_id = self._id(limit_id)
        answer = self._call(f"update limit {limit_id!r}", lambda c: c.update_limit(limit_id, new_max, name))
        if name is not None:
            self._forget()
        return Limit.from_api(answer["limit"])

    def reset(self, limit_id: str) -> Limit:
        """Set a limit's spend back to $0 (Pay-i keeps the history); returns the limit afterwards."""
        limit_id = self._id(limit_id)
        self._call(f"reset limit {limit_id!r}", lambda c: c.reset_limit(limit_id))
        return self.get(limit_id)

    def delete(self, limit_id: str) -> None:
        """Delete a limit (by id or unique name)."""
        limit_id = self._id(limit_id)
        self._call(f"delete limit {limit_id!r}", lambda c: c.delete_limit(limit_id))
        self._forget()

    def __repr__(self) -> str:
        return "pn.limits: .list() .get(id) .create(name, max, type='allow'|'block', threshold=None) .update(id, max=, name=) .reset(id) .delete(id)"


def resolve_ids(limits: Limits, values: Any, report: Callable[[str], None] | None = None) -> Any:
    """``values`` (limit ids or unique names) as ids; ContextError for an unknown or ambiguous one.

    Anything that is not a list of non-empty strings is returned as is, for ``check_options``
    to refuse with its own message.
    """
    from .context import ContextError

    if isinstance(values, str):
        values = [values]
    if values is None or not isinstance(values, (list, tuple)) or not all(isinstance(v, str) and v for v in values):
        return values
    for value in values:  # a name is at most as long as a limit's name (limit_rules)
        if len(value) > limit_rules.MAX_LIMIT_TEXT:
            raise ContextError(f"limit id or name is {len(value)} characters long; use at most {limit_rules.MAX_LIMIT_TEXT}")
    try:
        return limits.resolve(values, report=report)
    except ValueError as exc:
        raise ContextError(str(exc)) from None


def __getattr__(name: str) -> Any:
    """``pn.limits.list()``, ``.create(...)``...: this module stands for the session's ``Limits``.

    ``import payi_notebook.limits`` and ``pn.limits`` are the same object (this module), so
    ``pn.limits.Limits`` is the class and ``pn.limits.create`` the session's bound method.
    """
    if name.startswith("_") or not hasattr(Limits, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import current

    return getattr(current.session().limits, name)
