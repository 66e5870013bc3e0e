"""Views every ``Ledger.df`` passes through (analytics joins KPI scores and annotations this way).

They live outside the storage so the ledger stays below analytics in the import arrows;
each view gets a key that is the same while the ledger is unchanged, so it can cache.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pandas as pd

DfView = Callable[[pd.DataFrame, tuple[int, int, int]], pd.DataFrame]
_DF_VIEWS: list[DfView] = []
_LEDGER_UIDS = itertools.count(1)


def add_df_view(view: DfView) -> None:
    """Pass every ``Ledger.df`` through ``view(frame, key)``; it returns a new frame, never changes its argument.

    ``key`` is the same for every access while the ledger is unchanged, so a view can cache its work.
    """
    if view not in _DF_VIEWS:
        _DF_VIEWS.append(view)


def new_uid() -> int:
    """Names one ledger in view keys (an ``id()`` is reused after GC: a new ledger got the old one's join)."""
    return next(_LEDGER_UIDS)


def apply_views(frame: pd.DataFrame, key: tuple[int, int, int]) -> pd.DataFrame:
    for view in _DF_VIEWS:
        frame = view(frame, key)
    return frame
