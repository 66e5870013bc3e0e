"""The process's session, for the views and helpers that default to it.

Widgets and budgets sit below the session in the layers and never import it. The session
module hands its ``get_session`` to ``provide`` when it is imported (importing any part of
the package imports it first), so ``Breakdown()``, ``BudgetPanel()``, ``ResultView()`` and
``pn.progress`` still find the running session when given none.
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
