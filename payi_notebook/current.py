"""The process's session, for the views and helpers that default to it.

Widgets, budgets and the ledger sit below the session in the layers and never import it. The
package's ``__init__`` hands its lazy ``get_session`` to ``provide`` (importing any part of the
package runs it first), so ``pn.ledger()``, ``Breakdown()``, ``BudgetPanel()``, ``ResultView()``
and ``pn.progress`` find the process's session when given none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_source: Callable[[], Any] | None = None


def provide(source: Callable[[], Any]) -> None:
    """Name the function that returns the process's session (the session module calls it once)."""
    global _source
    _source = source


def session() -> Any:
    """The process's session (created on first use, not started), as the session module gives it."""
    if _source is None:
        raise RuntimeError("payi_notebook's session module is not loaded: import payi_notebook first")
    return _source()
