"""Budgets as reservations: hold a call's cost bound before it is sent, settle to its cost after.

Capture talks to a budget only through ``Reserver`` (``reserve`` / ``settle`` / ``state``), so
the in-process ``LocalBudget`` can be swapped for a coordinator elsewhere (a Dask scheduler
holding one budget for a cluster) without touching capture. A reservation is atomic: a
budget admits a call only if what is spent, plus what calls in flight hold, plus this call's
bound stays within the budget — so threads and tasks sharing it can never overshoot.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..context import check_thresholds

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.8, 0.95)
_defaults = [DEFAULT_THRESHOLDS]


class BudgetWarning(UserWarning):
    """A budget passed one of its warning thresholds (each is raised once per budget)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a budget refused a call (all USD)."""

    label: str  # "cell budget", "session budget", ...
    budget: float
    spent: float
    reserved: float
    bound: float
    reason: str | None = None  # why the call has no bound, when it has none


class BudgetExceeded(BaseException):
    """A call was refused before it was sent, because its cost bound would pass a budget.

    A ``BaseException`` (like ``KeyboardInterrupt``) on purpose: provider SDKs turn any
    ``Exception`` from the transport into a retried connection error, and a loop's
    ``except Exception`` must not swallow the stop. IPython shows it as one line.
    """

    def __init__(self, refusal: Refusal, hint: str = "") -> None:
        self.refusal = refusal
        self.budget, self.spent, self.reserved, self.bound = refusal.budget, refusal.spent, refusal.reserved, refusal.bound
        self.which = refusal.label
        super().__init__(_message(refusal, hint))

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def _message(r: Refusal, hint: str) -> str:
    held = f", ${r.reserved:.4f} held by calls in flight" if r.reserved > 1e-12 else ""
    if math.isinf(r.bound):
        why = f"its cost cannot be bounded ({r.reason})" if r.reason else "its cost cannot be bounded"
        fix = "set max_tokens (or run it outside the budget)"
    else:
        why = f"it could cost up to ${r.bound:.4f}"
        fix = hint or "raise the budget, or lower max_tokens"
    return (
        f"payi: call refused by the {r.label} of ${r.budget:.4f} (${r.spent:.4f} spent{held}): "
        f"{why}; nothing was sent. To go on: {fix}."
    )


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget at one moment (USD); ``budget`` None for a meter that only counts."""

    label: str
    budget: float | None
    spent: float
    reserved: float
    calls: int
    refused: int
    crossed: tuple[float, ...]  # thresholds passed so far
    thresholds: tuple[float, ...]
    bounds: float  # every admitted call's bound, summed (what an item may need: see pn.progress)
    started: float  # time.monotonic() of the first reservation (0 before)
    updated: float  # time.monotonic() of the last settle

    @property
    def fraction(self) -> float:
        return self.spent / self.budget if self.budget else 0.0

    @property
    def rate_per_min(self) -> float:
        """Spend per minute since the first call."""
        span = self.updated - self.started
        return self.spent / span * 60.0 if self.started and span > 0.5 else 0.0


@runtime_checkable
class Reserver(Protocol):
    """What capture needs of a budget. Implementations must make ``reserve`` atomic.

    ``reserve(key, bound)`` holds ``bound`` USD for the call ``key`` (an event id) and returns
    None, or returns a ``Refusal`` and holds nothing. ``settle(key, cost)`` releases that
    hold and counts ``cost`` (the call's actual cost; NaN counts the bound); a second settle
    of a key does nothing. It returns the warning thresholds this settle crossed.
    """

    label: str

    def reserve(self, key: str, bound: float) -> Refusal | None: ...

    def settle(self, key: str, cost: float) -> Sequence[float]: ...

    def state(self) -> BudgetState: ...


class LocalBudget:
    """A budget (or, with ``budget=None``, a spend meter) shared by the threads of one process."""

    def __init__(self, budget: float | None, label: str = "budget", thresholds: Iterable[float] | None = None) -> None:
        self.label = label
        self.budget = budget
        self.thresholds = tuple(sorted(thresholds if thresholds is not None else _defaults[0]))
        self._lock = threading.Lock()
        self._held: dict[str, float] = {}
        self._spent = 0.0
        self._reserved = 0.0
        self._calls = 0
        self._refused = 0
        self._crossed: list[float] = []
        self._bounds = 0.0
        self._started = 0.0
        self._updated = 0.0

    def reserve(self, key: str, bound: float) -> Refusal | None:
        with self._lock:
            limit = self.budget
            if limit is not None and self._spent + self._reserved + bound > limit:
                self._refused += 1
                return Refusal(self.label, limit, self._spent, self._reserved, bound)
            self._held[key] = bound
            self._reserved += bound
            self._bounds += bound
            self._calls += 1
            if not self._started:
                self._started = time.monotonic()
            return None

    def settle(self, key: str, cost: float) -> Sequence[float]:
        with self._lock:
            bound = self._held.pop(key, None)
            if bound is None:
                return ()
            self._reserved = self._reserved - bound if self._held else 0.0
            if math.isnan(cost):  # unpriceable here: count what was held (a meter holds inf: count nothing)
                cost = bound if math.isfinite(bound) else 0.0
            self._spent += max(cost, 0.0)
            self._updated = time.monotonic()
            limit = self.budget
            if not limit:
                return ()
            crossed = [t for t in self.thresholds if t not in self._crossed and self._spent >= t * limit]
            self._crossed.extend(crossed)
            return crossed

    def state(self) -> BudgetState:
        with self._lock:
            return BudgetState(
                self.label, self.budget, self._spent, self._reserved, self._calls, self._refused,
                tuple(self._crossed), self.thresholds, self._bounds, self._started, self._updated,
            )  # fmt: skip

    def __repr__(self) -> str:
        s = self.state()
        limit = f"${s.budget:.4f}" if s.budget is not None else "no limit"
        return f"LocalBudget({self.label}: ${s.spent:.4f} spent of {limit}, ${s.reserved:.4f} held)"


def set_default_thresholds(values: Iterable[float]) -> None:
    """Thresholds new budgets start with (from ``pn.configure(budget_thresholds=...)``)."""
    _defaults[0] = check_thresholds(values)
