"""``pn.progress(iterable, total=None, budget=None)``: a tqdm bar over a loop that also shows its spend.

The loop body runs in a tracking scope with a spend meter (a ``LocalBudget``, limited when
``budget`` is given), so every call an item makes is captured and counted the moment it
ends. The bar shows spend so far, spend per item and the projected total (spend / done ×
total). With a budget the loop stops — with one line saying so — before an item that could
pass it (judged by the largest bound an item has reserved so far), and the reservation refuses any single call
that would. tqdm picks the notebook widget in Jupyter and text elsewhere; when the bar was a
widget, a static line (text and HTML) is left after it for saved notebooks and exports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from .. import current, tracking
from ..context import check_budget, check_options
from ..widgets.style import esc
from .reservation import BudgetState, LocalBudget

T = TypeVar("T")
PROGRESS_LABEL = "pn.progress budget"


class Progress(Generic[T]):
    """Iterate it once; ``.budget`` is its meter, ``.stopped`` the reason it stopped early (or None)."""

    def __init__(self, iterable: Iterable[T], total: int | None = None, budget: float | None = None,
                 widget: bool | None = None, **tqdm_options: Any) -> None:  # fmt: skip
        self.iterable = iterable
        self.total = total if total is not None else _length(iterable)
        self.budget = LocalBudget(check_budget(budget), PROGRESS_LABEL)
        self.widget = widget
        self.tqdm_options = tqdm_options
        self.done = 0
        self.stopped: str | None = None
        self._costliest = 0.0  # the largest bound an item's calls reserved: what the next may need

    def __iter__(self) -> Iterator[T]:
        bar = _bar(self.widget, total=self.total, **self.tqdm_options)
        scope = tracking.child_scope(current.session().start().root_context(), _NO_OPTIONS, quiet=True, budget=self.budget)
        parent = tracking.current()
        token = tracking.enter(scope)
        finished = False
        try:
            before = 0.0
            for item in self.iterable:
                state = self.budget.state()
                if self.done:
                    self._costliest = max(self._costliest, state.bounds - before)
                    self._show(bar, state)
                    bar.update(1)
                if self._over(state):
                    break
                before = state.bounds
                yield item
                self.done += 1
            else:
                finished = True
            state = self.budget.state()
            if self.done and finished:
                self._show(bar, state)
                bar.update(1)
        finally:
            try:
                tracking.leave(token)
            except ValueError:  # closed from another context (the loop was abandoned)
                tracking.set_current(parent)
            self._close(bar, finished)

    def _over(self, state: BudgetState) -> bool:
        limit = state.budget
        if limit is None or not self.done or state.spent + state.reserved + self._costliest <= limit:
            return False
        self.stopped = (
            f"payi: pn.progress stopped after {self.done:,}{self._of()} items: ${state.spent:.4f} spent of the "
            f"${limit:.4f} budget, and an item may cost up to ${self._costliest:.4f}. Raise budget= to go on."
        )
        return True

    def _of(self) -> str:
        return f" of {self.total:,}" if self.total else ""

    def _show(self, bar: Any, state: BudgetState) -> None:
        bar.set_postfix_str(self.summary(state), refresh=False)

    def summary(self, state: BudgetState | None = None) -> str:
        """Spend so far, per item and projected, as the bar shows it."""
        state = state or self.budget.state()
        parts = [f"${state.spent:.4f} spent"]
        if self.done:
            per = state.spent / self.done
            parts.append(f"${per:.5f}/item")
            if self.total:
                parts.append(f"≈${per * self.total:.4f} projected")
        if state.budget is not None:
            parts.append(f"budget ${state.budget:.4f} ({state.fraction:.0%})")
        return ", ".join(parts)

    def _close(self, bar: Any, finished: bool) -> None:
        state = self.budget.state()
        if self.stopped is None and state.refused:
            self.stopped = (
                f"payi: pn.progress stopped at item {self.done + 1:,}{self._of()}: a call was refused by its "
                f"${state.budget:.4f} budget (${state.spent:.4f} spent). Raise budget= to go on."
            )
        bar.close()
        line = f"payi: {self.done:,}{self._of()} items, {self.summary(state)}"
        if getattr(bar, "container", None) is not None:  # a widget: leave a static copy for saved notebooks
            _display_static(line)
        if self.stopped:
            print(self.stopped, file=sys.stdout, flush=True)


_NO_OPTIONS = check_options()


def _length(iterable: Any) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None


def _bar(widget: bool | None, **options: Any) -> Any:
    if widget is False:
        from tqdm.std import tqdm
    elif widget is True:
        from tqdm.notebook import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(**options)


class _Static:
    """The final state of a bar as plain text and HTML (what a saved notebook keeps)."""

    def __init__(self, line: str) -> None:
        self.line = line

    def __repr__(self) -> str:
        return self.line

    def _repr_html_(self) -> str:
        return f'<div class="payi-progress" style="font-family:monospace;font-size:12px">{esc(self.line)}</div>'


def _display_static(line: str) -> None:
    from IPython.display import display

    display(_Static(line))


def progress(iterable: Iterable[T], total: int | None = None, budget: float | None = None, **options: Any) -> Progress[T]:
    """A progress bar over ``iterable`` showing spend so far, per item and projected; stops at ``budget`` (USD)."""
    return Progress(iterable, total=total, budget=budget, **options)
