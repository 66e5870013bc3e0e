"""A cell budget that holds across a Dask cluster: one reservation book, kept by the scheduler.

When a scope with a budget first submits work, its ``LocalBudget`` moves to the scheduler
(``PayiBudgets``, a scheduler plugin): what it had spent and held is carried over, and the
scope — and the scopes it is nested in — reserve through ``ClusterBudget`` from then on, in
the notebook and in every worker alike. A reservation is one scheduler call, atomic there,
so the cluster as a whole cannot pass the budget. Holds of a worker that dies stay counted
(conservative: the budget may stop early, never late).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from ..budgets.reservation import BudgetState, LocalBudget, Refusal
from ..tracking import TrackingScope

PLUGIN_NAME = "payi_notebook.budgets"
Call = Callable[..., Any]  # call(handler name, **arguments) on the scheduler, from this process


class PayiBudgets(SchedulerPlugin):
    """The scheduler's budgets, by id; workers and the notebook reach them through handlers."""

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.budgets: dict[str, LocalBudget] = {}

    async def start(self, scheduler: Any) -> None:
        scheduler.handlers.update(
            payi_budget_open=self.open,
            payi_budget_reserve=self.reserve,
            payi_budget_settle=self.settle,
            payi_budget_state=self.state,
        )

    def open(self, id: str, budget: float | None, label: str, thresholds: list[float], carried: float) -> None:
        if id in self.budgets:
            return
        book = LocalBudget(budget, label, thresholds)
        if carried > 0:  # spent and held in the notebook before the budget moved here
            book.reserve("payi_notebook.carried", 0.0)
            book.settle("payi_notebook.carried", carried)
        self.budgets[id] = book

    def reserve(self, id: str, key: str, bound: float) -> dict[str, Any] | None:
        refusal = self.budgets[id].reserve(key, bound)
        return asdict(refusal) if refusal is not None else None

    def settle(self, id: str, key: str, cost: float) -> list[float]:
        return list(self.budgets[id].settle(key, cost))

    def state(self, id: str) -> dict[str, Any]:
        return asdict(self.budgets[id].state())


class ClusterBudget:
    """A ``budgets.Reserver`` whose book is on the scheduler."""

    def __init__(self, budget_id: str, label: str, call: Call) -> None:
        self.id = budget_id
        self.label = label
        self._call = call

    def reserve(self, key: str, bound: float) -> Refusal | None:
        answer = self._call("payi_budget_reserve", id=self.id, key=key, bound=bound)
        return Refusal(**answer) if answer else None

    def settle(self, key: str, cost: float) -> Sequence[float]:
        return tuple(self._call("payi_budget_settle", id=self.id, key=key, cost=cost))

    def state(self) -> BudgetState:
        fields = self._call("payi_budget_state", id=self.id)
        return BudgetState(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    def __repr__(self) -> str:
        return f"ClusterBudget({self.label}, id={self.id})"


Moved = weakref.WeakKeyDictionary[LocalBudget, ClusterBudget]


def share(scope: TrackingScope, call: Call, moved: Moved) -> list[list[str]]:
    """Move ``scope``'s local budgets to the scheduler (once each); the ``[id, label]`` pairs tasks carry."""
    swap: dict[int, ClusterBudget] = {}
    for budget in scope.budgets:
        if not isinstance(budget, LocalBudget):
            continue
        proxy = moved.get(budget)
        if proxy is None:
            state = budget.state()
            proxy = ClusterBudget(uuid.uuid4().hex, state.label, call)
            call(
                "payi_budget_open",
                id=proxy.id,
                budget=state.budget,
                label=state.label,
                thresholds=list(state.thresholds),
                carried=state.spent + state.reserved,
            )
            moved[budget] = proxy
        swap[id(budget)] = proxy
    node: TrackingScope | None = scope
    while node is not None and swap:
        node.budgets = tuple(swap.get(id(b), b) for b in node.budgets)
        if node.budget is not None and id(node.budget) in swap:
            node.budget = swap[id(node.budget)]
        node = node.parent
    return [[b.id, b.label] for b in scope.budgets if isinstance(b, ClusterBudget)]


def on_worker(pairs: Sequence[Sequence[str]], worker: Any) -> tuple[ClusterBudget, ...]:
    """A task's budgets, as the worker reserves in them (through its own scheduler connection)."""
    from distributed.utils import sync

    def call(op: str, **kwargs: Any) -> Any:
        return sync(worker.loop, getattr(worker.scheduler, op), **kwargs)

    return tuple(ClusterBudget(budget_id, label, call) for budget_id, label in pairs)
