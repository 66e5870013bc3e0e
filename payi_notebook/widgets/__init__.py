"""Notebook views of the ledger and of Pay-i: ``Badge``, ``CostBreakdown``, ``ResultView``, ``BudgetPanel``.

Loaded lazily: ``import payi_notebook`` and capture never import ipywidgets or plotly;
the first use of a widget does.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Badge": "badge",
    "BadgeBoard": "badge",
    "CostBreakdown": "breakdown",
    "ResultView": "result_view",
    "BudgetPanel": "budget_panel",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
