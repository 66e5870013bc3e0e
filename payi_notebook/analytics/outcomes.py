"""What the ledger shows besides its own columns: KPI scores per use case instance and properties set afterwards.

``join(df, book, notes)`` is applied to every ``pn.ledger().df`` (the ledger's storage is not
touched):

- one column ``kpi_<name>`` per KPI scored in this process (or read with ``pn.kpis.fetch``):
  the score of the row's use case instance, matched on (``use_case_name``, ``use_case_id``),
  NaN where the instance has none. Every row (call) of an instance carries its score;
- ``properties`` merged with what ``pn.annotate`` set on that row (``None`` removed a key).

``instances(df)`` is one row per use case instance — ``use_case_name``, ``use_case_id``,
``use_case_version``, ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd``, ``started``
and the ``kpi_*`` columns — so cost per outcome by version is one ``groupby``::

    by_version = pn.outcomes().groupby("use_case_version")[["cost_usd", "kpi_accepted"]].sum()
    by_version["cost_usd"] / by_version["kpi_accepted"]       # cost per accepted answer
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .kpis import ScoreBook

KPI_PREFIX = "kpi_"
INSTANCE_KEYS = ["use_case_name", "use_case_id"]
INSTANCE_COLUMNS = [*INSTANCE_KEYS, "use_case_version", "calls", "input_tokens", "output_tokens", "cost_usd", "started"]


class Notes:
    """Properties set on ledger rows after the fact, by ``event_id``."""

    def __init__(self) -> None:
        self._props: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.version = 0

    def add(self, event_id: str, base: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
        """Merge ``changes`` into the row's properties (``base``: what the ledger holds); returns the result."""
        with self._lock:
            merged = {**base, **self._props.get(event_id, {}), **changes}
            self._props[event_id] = kept = {k: v for k, v in merged.items() if v is not None}
            self.version += 1
            return dict(kept)

    def get(self, event_id: str) -> dict[str, str] | None:
        return self._props.get(event_id)

    def __bool__(self) -> bool:
        return bool(self._props)

    def snapshot(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return dict(self._props)


def _instance_codes(df: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Each row's instance as a code into a list of distinct (use_case_name, use_case_id) pairs (-1: none).

    Works on the categoricals' codes, so a million rows cost a few ms, not a Python loop over rows.
    """
    names, ids = pd.Categorical(df["use_case_name"]), pd.Categorical(df["use_case_id"])
    name_codes, id_codes = names.codes.astype(np.int64), ids.codes.astype(np.int64)
    width = len(ids.categories) + 1
    combined = name_codes * width + id_codes
    combined = np.where((name_codes < 0) | (id_codes < 0), -1, combined)
    codes = np.full(len(combined), -1, dtype=np.int64)
    valid = combined >= 0
    found, distinct = pd.factorize(combined[valid], sort=False)  # hashing, in first-call order
    codes[valid] = found
    name_values = np.asarray(names.categories, dtype=object)[distinct // width]
    id_values = np.asarray(ids.categories, dtype=object)[distinct % width]
    return codes, list(zip(name_values.tolist(), id_values.tolist()))


def _kpi_arrays(book: ScoreBook, pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """KPI name → score per instance (in ``pairs`` order, NaN where unscored), plus a trailing NaN for code -1."""
    position = {pair: i for i, pair in enumerate(pairs)}
    arrays: dict[str, np.ndarray] = {}
    for (uc, uid, name), score in book.items():
        at = position.get((uc, uid))
        if at is None:
            continue
        if name not in arrays:
            arrays[name] = np.full(len(pairs) + 1, np.nan)
        arrays[name][at] = score
    return arrays


class View:
    """``join`` as the ledger's df view, caching per ledger version: rows → instances, and the joined frame."""

    def __init__(self, book: ScoreBook, notes: Notes) -> None:
        self.book, self.notes = book, notes
        self._codes: tuple[Any, tuple[np.ndarray, list[tuple[str, str]]]] | None = None
        self._joined: tuple[Any, pd.DataFrame] | None = None
        self._lock = threading.Lock()

    def __call__(self, df: pd.DataFrame, key: tuple[int, int, int]) -> pd.DataFrame:
        if not self.book.version and not self.notes:
            return df
        state = (key, self.book.version, self.notes.version)
        with self._lock:
            if self._joined is not None and self._joined[0] == state:
                return self._joined[1].copy(deep=False)
            if self._codes is None or self._codes[0] != key:
                self._codes = (key, _instance_codes(df))
            joined = join(df, self.book, self.notes, self._codes[1])
            self._joined = (state, joined)
        return joined.copy(deep=False)


def join(
    df: pd.DataFrame,
    book: ScoreBook,
    notes: Notes,
    instance_codes: tuple[np.ndarray, list[tuple[str, str]]] | None = None,
) -> pd.DataFrame:
    """``df`` with the ``kpi_*`` columns and annotated properties (a new frame; ``df`` is unchanged)."""
    if book.version and not df.empty:
        codes, pairs = instance_codes or _instance_codes(df)
        arrays = _kpi_arrays(book, pairs)
        if arrays:
            df = df.copy(deep=False)
            for name in sorted(arrays):
                df[f"{KPI_PREFIX}{name}"] = arrays[name][codes]  # code -1 reads the trailing NaN
    if notes and not df.empty:
        props = notes.snapshot()
        annotated = df["event_id"].isin(list(props))
        if annotated.any():
            df = df.copy(deep=False)
            column = df["properties"].copy()
            for label, event_id in df.loc[annotated, "event_id"].items():
                column.at[label] = props[event_id]
            df["properties"] = column
    return df


def instances(df: pd.DataFrame) -> pd.DataFrame:
    """One row per use case instance in ``df`` (a ledger frame after ``join``), in first-call order."""
    kpis = [c for c in df.columns if c.startswith(KPI_PREFIX)]
    if df.empty:
        return pd.DataFrame(columns=[*INSTANCE_COLUMNS, *kpis])
    codes, pairs = _instance_codes(df)
    if not pairs:
        return pd.DataFrame(columns=[*INSTANCE_COLUMNS, *kpis])
    keep = codes >= 0
    grouped = df.loc[keep].groupby(codes[keep], sort=False)
    out = grouped.agg(
        use_case_version=("use_case_version", "max"),
        calls=("event_id", "size"),
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
        cost_usd=("cost_usd", "sum"),
        started=("timestamp", "min"),
        **{column: (column, "first") for column in kpis},
    )
    out.insert(0, "use_case_id", [pairs[code][1] for code in out.index])
    out.insert(0, "use_case_name", [pairs[code][0] for code in out.index])
    return out.reset_index(drop=True)
