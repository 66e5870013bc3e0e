"""The ledger: one row per captured provider call, and its pandas view.

``schema`` (columns, dtypes, the stored record), ``records`` (an event or an update as stored
values), ``store`` (the columnar storage), ``build`` and ``chunks`` (the DataFrame, a chunk
at a time), ``table`` (``Ledger``: locks, refs, deferred rows, subscribers), ``totals``,
``io`` (Parquet/CSV) and ``views`` (``add_df_view``).

The package is callable: ``pn.ledger()`` (this module) returns the current session's
ledger, found through ``payi_notebook.current`` so the ledger imports nothing above it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from importlib import import_module

from ..current import session as session_of_process
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
    "to_parquet",
]

def current() -> Ledger:
    """The ledger of captured calls; ``pn.ledger().df`` is the pandas DataFrame."""
    ledger: Ledger = session_of_process().ledger
    return ledger


class _CallableModule(types.ModuleType):
    """This package, callable: ``payi_notebook.ledger()`` is ``current()``, and the module stays a module."""

    def __call__(self) -> Ledger:
        return current()

    def __reduce__(self) -> tuple[Callable[[str], types.ModuleType], tuple[str]]:
        """Pickled by name, like any module (cloudpickle pickles functions that use ``pn.ledger``)."""
        return import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
