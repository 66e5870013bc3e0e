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

    def add(self, event_id: str, base: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
        """Merge ``changes`` into the row's properties (``base``: what the ledger holds); returns the result."""
        with self._lock:
            merged = {**base, **self._props.get(event_id, {}), **changes}
            self._props[event_id] = kept = {k: v for k, v in merged.items() if v is not None}
            return dict(kept)

    def get(self, event_id: str) -> dict[str, str] | None:
        return self._props.get(event_id)

    def __bool__(self) -> bool:
        return bool(self._props)

    def snapshot(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return dict(self._props)


def kpi_columns(book: ScoreBook) -> pd.DataFrame:
    """Scores pivoted to one row per (use_case_name, use_case_id) and one ``kpi_<name>`` column per KPI."""
    scores = book.frame()
    if scores.empty:
        return pd.DataFrame(columns=INSTANCE_KEYS)
    wide = scores.pivot_table(index=INSTANCE_KEYS, columns="kpi_name", values="score", aggfunc="last")
    wide.columns = [f"{KPI_PREFIX}{name}" for name in wide.columns]
    return wide.reset_index()


def join(df: pd.DataFrame, book: ScoreBook, notes: Notes) -> pd.DataFrame:
    """``df`` with the ``kpi_*`` columns and annotated properties (a new frame; ``df`` is unchanged)."""
    if book.version and not df.empty:
        wide = kpi_columns(book)
        if not wide.empty:
            keys = pd.MultiIndex.from_frame(df[INSTANCE_KEYS].astype(object))
            index = pd.MultiIndex.from_frame(wide[INSTANCE_KEYS].astype(object))
            positions = index.get_indexer(keys)
            df = df.copy(deep=False)
            for column in wide.columns[len(INSTANCE_KEYS) :]:
                values = wide[column].to_numpy()
                df[column] = pd.Series(values[positions], index=df.index).where(positions >= 0)
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
    rows = df[df["use_case_name"].notna() & df["use_case_id"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=[*INSTANCE_COLUMNS, *kpis])
    grouped = rows.astype({"use_case_name": object, "use_case_id": object}).groupby(
        INSTANCE_KEYS, sort=False, observed=True
    )
    out = grouped.agg(
        use_case_version=("use_case_version", "max"),
        calls=("event_id", "size"),
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
        cost_usd=("cost_usd", "sum"),
        started=("timestamp", "min"),
        **{column: (column, "first") for column in kpis},
    )
    return out.reset_index()
