"""The ledger: one row per captured provider call, and its pandas view.

``schema`` (columns, dtypes, the stored record), ``records`` (an event or an update as stored
values), ``store`` (the columnar storage), ``build`` and ``chunks`` (the DataFrame, a chunk
at a time), ``table`` (``Ledger``: locks, refs, deferred rows, subscribers), ``totals``,
``io`` (Parquet/CSV) and ``views`` (``add_df_view``).

The package is callable: ``pn.ledger()`` (this module) returns the current session's
ledger through the provider the session registers with ``set_current``, so the ledger
imports nothing above it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

from .io import read_csv, read_parquet, to_parquet
from .schema import (
    COLUMNS,
    COST_SOURCES,
    FRAME_COLUMNS,
    LIMIT_ID,
    NESTED_COLUMNS,
    UPDATABLE,
    RowRef,
    Totals,
    UnknownColumnError,
)
from .table import Ledger
from .views import DfView, add_df_view

__all__ = [
    "COLUMNS",
    "COST_SOURCES",
    "FRAME_COLUMNS",
    "LIMIT_ID",
    "NESTED_COLUMNS",
    "UPDATABLE",
    "DfView",
    "Ledger",
    "RowRef",
    "Totals",
    "UnknownColumnError",
    "add_df_view",
    "current",
    "read_csv",
    "read_parquet",
    "set_current",
    "to_parquet",
]

_provider: Callable[[], Ledger] | None = None


def set_current(provider: Callable[[], Ledger]) -> None:
    """Register what ``current()`` (and calling this module) returns: the session's ledger."""
    global _provider
    _provider = provider


def current() -> Ledger:
    """The ledger of captured calls; ``pn.ledger().df`` is the pandas DataFrame."""
    if _provider is None:
        raise RuntimeError("no ledger yet: import payi_notebook (its session provides the ledger)")
    return _provider()


class _CallableModule(types.ModuleType):
    """This package, callable: ``payi_notebook.ledger()`` is ``current()``, and the module stays a module."""

    def __call__(self) -> Ledger:
        return current()


sys.modules[__name__].__class__ = _CallableModule
