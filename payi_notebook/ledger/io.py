"""Ledger frames to and from files (Parquet, CSV) with their dtypes and nested columns intact.

Plain ``DataFrame.to_parquet``/``read_csv`` lose what the ledger's columns mean (dicts become
padded structs or text, categories and nullable ints fall back to object), so a saved ledger
read back compares equal to the frame it came from only through these.
"""

from __future__ import annotations

import ast
from os import PathLike

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .build import objects
from .schema import (
    BOOL_COLUMNS,
    CATEGORY_COLUMNS,
    FIXED_CATEGORIES,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    NESTED_COLUMNS,
    NULLABLE_INT_COLUMNS,
    TEXT,
    TEXT_COLUMNS,
)


def to_parquet(frame: pd.DataFrame, path: str | PathLike[str]) -> None:
    """Write a ledger frame (any rows and columns of one) to Parquet; ``read_parquet`` restores it.

    Plain ``DataFrame.to_parquet`` cannot store the nested columns faithfully (dicts become
    structs padded with every key seen, and an all-empty dict column fails). Here ``units``,
    ``properties`` and ``limit_states`` are written as Arrow maps and ``limit_ids`` as a list
    of strings; the index and every other dtype are kept.
    """
    nested_types = {
        "units": pa.map_(pa.string(), pa.map_(pa.string(), pa.int64())),
        "properties": pa.map_(pa.string(), pa.string()),
        "limit_states": pa.map_(pa.string(), pa.string()),
        "limit_ids": pa.list_(pa.string()),
    }
    present = [c for c in frame.columns if c in nested_types]
    table = pa.Table.from_pandas(frame.drop(columns=present))  # keeps the index and the pandas dtypes
    for name in present:
        column = pa.array(frame[name].tolist(), type=nested_types[name])
        table = table.add_column(frame.columns.get_loc(name), name, column)
    pq.write_table(table, path)


def read_parquet(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a file written by ``to_parquet`` back into the ledger's column types."""
    frame = pd.read_parquet(path, to_pandas_kwargs={"maps_as_pydicts": "strict"})
    if "limit_ids" in frame:
        frame["limit_ids"] = objects(map(list, frame["limit_ids"]), len(frame))
    return _conform_categories(frame)


def _conform_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """Text categories everywhere (an empty column reads back as object); fixed sets in full."""
    for name in CATEGORY_COLUMNS:
        if name in frame:
            fixed = FIXED_CATEGORIES.get(name)
            categories = frame[name].cat.categories if fixed is None else fixed
            frame[name] = frame[name].cat.set_categories(pd.Index(categories, dtype=TEXT))
    return frame


def read_csv(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a ledger frame written with ``DataFrame.to_csv(path, index=False)`` (or ``Ledger.to_csv``).

    Nested columns come back from their Python-literal text, and every known column gets the
    ledger's dtype again (category dtypes list the categories present, in sorted order).
    """
    frame = pd.read_csv(path)
    for name in frame.columns:
        if name in NESTED_COLUMNS:
            frame[name] = objects((None if pd.isna(v) else ast.literal_eval(v) for v in frame[name]), len(frame))
        elif name == "timestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        elif name in CATEGORY_COLUMNS:
            frame[name] = frame[name].astype(TEXT).astype("category")
        elif name in TEXT_COLUMNS:
            frame[name] = frame[name].astype(TEXT)
        elif name in NULLABLE_INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        elif name in INT_COLUMNS:
            frame[name] = frame[name].astype(np.int64)
        elif name in FLOAT_COLUMNS:
            frame[name] = frame[name].astype(np.float64)
        elif name in BOOL_COLUMNS:
            frame[name] = frame[name].astype(bool)
    return _conform_categories(frame)
