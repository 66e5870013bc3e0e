"""Cell budgets: ``%%payi --budget USD`` and ``%%payi --estimate N``, and what is said after the cell."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..context import ContextError
from .reservation import BudgetState, LocalBudget, Refusal

CELL_LABEL = "cell budget"


class EstimateDone(BaseException):
    """``%%payi --estimate N``: the cell was stopped before its call N+1, as asked."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        super().__init__(
            f"payi: --estimate stopped the cell before call {calls + 1}; the projection is below. "
            "Remove --estimate to run the cell in full."
        )

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


class CallCap:
    """A ``Reserver`` that lets ``calls`` calls through, then stops the cell (``--estimate``).

    It meters (and, given ``budget``, limits) those calls like a cell budget, and keeps their
    bounds so the projection can say what a call may cost at most. Its ``reserve`` raises
    ``EstimateDone`` (rather than refusing) at call N+1: the cell is stopped, not the call refused.
    """

    def __init__(self, calls: int, budget: float | None = None) -> None:
        self.calls = calls
        self.meter = LocalBudget(budget, CELL_LABEL)
        self.label = self.meter.label
        self.highs: list[float] = []
        self._lock = threading.Lock()

    def reserve(self, key: str, bound: float) -> Refusal | None:
        with self._lock:
            if len(self.highs) >= self.calls:
                raise EstimateDone(self.calls)
            refusal = self.meter.reserve(key, bound)
            if refusal is None:
                self.highs.append(bound)
            return refusal

    def settle(self, key: str, cost: float) -> Sequence[float]:
        return self.meter.settle(key, cost)

    def state(self) -> BudgetState:
        return self.meter.state()

    def projection(self) -> str:
        """What the calls so far say about the cell's cost."""
        state = self.meter.state()
        done = len(self.highs)
        if not done:
            return "payi: --estimate: the cell made no calls, so there is nothing to project."
        per = state.spent / done
        high = max(self.highs)
        scale = ", ".join(f"{n:,} calls ≈ ${per * n:.4f}" for n in (100, 1_000, 10_000))
        return (
            f"payi: estimate from the first {done} call(s): ${state.spent:.4f} spent, ${per:.6f} per call "
            f"(a call may cost up to ${high:.6f}); {scale}."
        )


def check_estimate(value: Any) -> int | None:
    """``--estimate N``: a positive number of calls to run before projecting."""
    if value is None:
        return None
    try:
        calls = int(str(value))
    except ValueError:
        raise ContextError(f"--estimate takes a number of calls like 3, got {value!r}") from None
    if calls < 1:
        raise ContextError(f"--estimate takes a positive number of calls, got {value!r}")
    return calls


def cell_budget(options: dict[str, Any]) -> Any:
    """The cell's own ``Reserver`` from its options (a budget, an estimate cap, both or neither)."""
    amount, calls = options.get("budget"), options.get("estimate")
    if calls is not None:
        return CallCap(calls, amount)
    if amount is not None:
        return LocalBudget(amount, CELL_LABEL)
    return None


def after_cell_lines(scope: Any) -> list[str]:
    """One line on the cell's budget (refusals, what is left) or its estimate, for after the cell."""
    budget = scope.budget
    if budget is None:
        return []
    state = budget.state()
    if isinstance(budget, CallCap):
        return [budget.projection()]
    if not state.refused:
        return []
    calls = f"{state.refused} call" + ("s were" if state.refused > 1 else " was")
    return [
        f"payi: {calls} refused by the {state.label} of ${state.budget:.4f} (${state.spent:.4f} spent by "
        f"{state.calls} calls); nothing was sent for them. Raise --budget to run more."
    ]


def budget_lines(scope: Any) -> None:
    """A session cell listener: print ``after_cell_lines`` under the cell."""
    for line in after_cell_lines(scope):
        print(line)


def badge_extra(scope: Any, session_budget: Any) -> Callable[[], Any] | None:
    """What a cell's badge says of its budget (the cell's own, else the session's), re-read when it refreshes."""
    budget = scope.budget if scope.budget is not None else session_budget
    if budget is None:
        return None
    from .live import BudgetLine

    return lambda: BudgetLine(budget.state())


def live_badge(ledger: Any, scope: Any, session_budget: Any, elapsed: float) -> Any:
    """The running cell's badge: its totals so far, its budget (or its spend rate)."""
    from ..widgets.badge import Badge
    from .live import BudgetLine

    totals = ledger.totals(list(scope.refs))
    budget = scope.budget if scope.budget is not None else session_budget
    extra = BudgetLine(budget.state() if budget is not None else None, totals.cost_usd, elapsed)
    return Badge(totals, label="payi (running)", extra=extra)
