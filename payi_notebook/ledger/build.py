"""Columns of the ledger's frame from a store snapshot of some rows, without a Python object per row.

Per-shape values (a few hundred shapes for a million rows) become small lookup tables
indexed by the rows' shape codes; strings come from the heaps as Arrow arrays; ``units``
maps are rebuilt from token counts with numpy, one map object per distinct map. Text
categoricals are returned as codes against ``categories(...)`` of all shapes, so pieces
built at different times stay valid under the latest dtype (categories only ever grow at
the end): ``chunks`` joins them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..units import ANTHROPIC_LARGE_CONTEXT_TOKENS, TOKEN_LAYOUTS
from .schema import (
    CATEGORY_COLUMNS,
    COLUMN_HEAPS,
    ESTIMATED,
    FIXED_CATEGORIES,
    NO_UNITS,
    PARTIAL,
    RECORD_COLUMNS,
    TEXT,
)
from .shapes import ShapeTables
from .store import Snapshot

_HEX_SLICE = 1 << 18  # octets rendered per step in event_ids
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint16)  # octet -> its 2 hex digits
SHAPE_CATEGORIES = tuple(name for name in CATEGORY_COLUMNS if name not in FIXED_CATEGORIES)


def _one_sided(side: str, values: list[int]) -> list[dict[str, int]]:
    """``{side: value}`` for each value, one dict per distinct value."""
    made = {value: {side: value} for value in dict.fromkeys(values)}
    return [made[value] for value in values]


def lookup(table: list[Any]) -> np.ndarray:
    """A small object array of ``table`` (its items stay whole, even tuples and lists)."""
    out = np.empty(len(table), dtype=object)
    for i, item in enumerate(table):
        out[i] = item
    return out


def objects(values: Iterable[Any], n: int) -> np.ndarray:
    """An object column straight from an iterable (no per-element shape discovery)."""
    return np.fromiter(values, dtype=object, count=n)


def categories(values: Iterable[Any]) -> tuple[np.ndarray, pd.CategoricalDtype]:
    """Codes of ``values`` (-1 for None) and a text category dtype of the distinct ones, first seen first.

    The codes have the narrowest type pandas would convert them to, so indexing them by row
    makes the final codes array at once.
    """
    index: dict[Any, int] = {}
    codes = [-1 if v is None else index.setdefault(v, len(index)) for v in values]
    return np.array(codes, dtype=code_width(len(index))), pd.CategoricalDtype(pd.Index(list(index), dtype=TEXT))


def code_width(categories: int) -> type[np.signedinteger[Any]]:
    """The integer type pandas keeps codes of that many categories in."""
    return np.int8 if categories < 127 else np.int16 if categories < 32767 else np.int32


def fixed_dtype(name: str) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(pd.Index(FIXED_CATEGORIES[name], dtype=TEXT))


def nullable_int(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(values.astype(np.int64, copy=False), missing)


def text(values: Any) -> Any:
    return pd.array(values, dtype=TEXT)


def taken(pool: pa.Array, entries: np.ndarray) -> pa.Array:
    """``pool[entries]`` (int32 or int64), null where the entry is -1."""
    return pool.take(pa.array(entries, mask=entries < 0, type=pa.from_numpy_dtype(entries.dtype)))


def heap_column(heap: tuple[bytes, bytes, np.ndarray]) -> pa.Array:
    """Row strings from a heap slice: one Arrow array over it, taken in row order (-1: null)."""
    data, ends, entries = heap
    count = len(ends) // 8 - 1
    pool = pa.LargeStringArray.from_buffers(count, pa.py_buffer(ends), pa.py_buffer(data))
    if count == len(entries) and np.array_equal(entries, np.arange(count, dtype=entries.dtype)):
        return pool  # one entry per row, in order: no copy
    return taken(pool, entries)


def event_ids(raw: np.ndarray, odd: dict[int, str]) -> pa.Array:
    """Event ids rendered from their 16 raw bytes (through Arrow: no Python string per row).

    Octets become digit pairs a slice at a time: numpy indexes through an intp copy of the
    index array, which for all octets at once would be 128 bytes a row.
    """
    n = len(raw)
    octets = raw.view(np.uint8)
    digits = np.empty(len(octets), dtype=np.uint16)  # 32 hex digits per row, back to back
    for start in range(0, len(octets), _HEX_SLICE):
        np.take(_HEX_PAIRS, octets[start : start + _HEX_SLICE], out=digits[start : start + _HEX_SLICE])
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64)
    ids = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits))
    if odd:  # the few ids kept verbatim, in row order
        rows = sorted(odd)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        ids = pc.replace_with_mask(ids, pa.array(mask), pa.array([odd[i] for i in rows], type=pa.large_string()))
    return ids


def distinct(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Codes numbering the distinct rows of some integer columns, and the first row of each code.

    The columns are combined into one int64 key, mixed radix over each column's range (a
    column whose range is wider than the row count is numbered by value first; the key is
    factorised on the way when the next column would overflow it), then factorised.
    """
    n = len(columns[0])
    key, span = np.zeros(n, dtype=np.int64), 1
    for column in columns:
        low = int(column.min()) if n else 0
        width = (int(column.max()) - low + 1) if n else 1
        if width > n:
            column, uniques = pd.factorize(column)
            low, width = 0, len(uniques)
        if span * width >= 2**63:
            key, uniques = pd.factorize(key)
            span = len(uniques)
        key = key * width + (column - low)
        span *= width
    codes, uniques = pd.factorize(key)
    firsts = np.empty(len(uniques), dtype=np.intp)
    firsts[codes[::-1]] = np.arange(n - 1, -1, -1)  # the last write per code is its first row
    return codes, firsts


def _shared_ints(*columns: np.ndarray) -> list[list[int]]:
    """``column.tolist()`` for some equally long columns, one int object per value when their range is small.

    Token counts repeat a lot (a million rows hold a few thousand distinct values): a table
    of the range, indexed by value, spares an int object per row.
    """
    low = min(int(column.min()) for column in columns)
    high = max(int(column.max()) for column in columns)
    if high - low >= len(columns) * len(columns[0]):
        return [column.tolist() for column in columns]
    table = np.arange(low, high + 1).astype(object)
    return [table[column - low].tolist() for column in columns]


def units_column(
    anthropic: np.ndarray, inp: np.ndarray, out: np.ndarray, read: np.ndarray, write: np.ndarray, reasoning: np.ndarray
) -> np.ndarray:
    """``units.units_from_tokens`` for every row, one map object per distinct map.

    numpy does the arithmetic and finds the distinct maps (a session repeats many: same
    prompt, embeddings, fixed-size outputs); each of the 12 kinds of map (layout x which
    one-sided entries are present) is then made with dict displays, no call per row, its
    ints and one-sided entries shared by value; rows take their map in one fancy index.
    """
    layout = np.where(anthropic, 1 + (inp >= ANTHROPIC_LARGE_CONTEXT_TOKENS), 0)
    parts = (
        np.where(anthropic, inp - read - write, inp - read),
        np.where(anthropic, out, out - reasoning),
        np.where(anthropic, write, read),
        np.where(anthropic, read, reasoning),
    )
    codes, firsts = distinct((layout, *parts))
    layout = layout[firsts]
    text_in, text_out, first, second = (part[firsts] for part in parts)
    kinds = layout * 4 + (first != 0) * 2 + (second != 0)
    maps = np.empty(len(firsts), dtype=object)
    for kind in np.flatnonzero(np.bincount(kinds, minlength=12)).tolist():
        at = np.flatnonzero(kinds == kind)
        key, first_key, first_side, second_key, second_side = TOKEN_LAYOUTS[kind >> 2]
        a, b, c, d = _shared_ints(text_in[at], text_out[at], first[at], second[at])
        if kind & 3 == 0:
            made = [{key: {"input": x, "output": y}} for x, y in zip(a, b)]
        elif kind & 3 == 2:
            ones = _one_sided(first_side, c)
            made = [{key: {"input": x, "output": y}, first_key: z} for x, y, z in zip(a, b, ones)]
        elif kind & 3 == 1:
            ones = _one_sided(second_side, d)
            made = [{key: {"input": x, "output": y}, second_key: w} for x, y, w in zip(a, b, ones)]
        else:
            made = [
                {key: {"input": x, "output": y}, first_key: z, second_key: w}
                for x, y, z, w in zip(a, b, _one_sided(first_side, c), _one_sided(second_side, d))
            ]
        maps[at] = objects(made, len(at))
    return maps[codes]


class Columns:
    """One snapshot's columns, each built on request, as a piece ``chunks`` can join.

    Text categoricals are their codes (see the module doc), text columns Arrow arrays,
    timestamps naive ``datetime64[us]`` (UTC), everything else what the frame holds.
    Nested values are fresh objects per build, one per distinct value.
    """

    def __init__(self, s: Snapshot, tables: ShapeTables) -> None:
        self.s = s
        self.f = s.fields
        self.tables = tables

    @cached_property
    def shape(self) -> np.ndarray:
        return self.f["shape"]

    @cached_property
    def has_payi(self) -> np.ndarray:
        return ~np.isnan(self.f["payi"])

    def _per_row(self, name: str) -> np.ndarray:
        """A plain per-shape table taken at each row."""
        return self.tables.values(name, self.s.shapes)[self.shape]

    def build(self, name: str) -> Any:
        """The piece of column ``name`` for the snapshot's rows."""
        f = self.f
        if name in RECORD_COLUMNS:
            return f[RECORD_COLUMNS[name]]
        if name in COLUMN_HEAPS:
            return heap_column(self.s.heaps[COLUMN_HEAPS[name]])
        if name in SHAPE_CATEGORIES:  # codes as narrow as pandas keeps them: no copy when they become a column
            table = self.tables.codes(name, self.s.shapes)
            return table.astype(code_width(len(self.tables.keys(name))))[self.shape]
        if name in ("execution_count", "use_case_version"):
            values = self.tables.values(name, self.s.shapes)
            missing = np.array([v is None for v in values.tolist()], dtype=bool)
            ints = np.where(missing, 0, values).astype(np.int64)
            return nullable_int(ints[self.shape], missing[self.shape])
        method: Callable[[], Any] = getattr(self, name)
        return method()

    def _nested(self, name: str, make: Callable[[Any], Any]) -> np.ndarray:
        """Fresh ``make(key)`` objects for the distinct values the rows use, spread over the rows."""
        codes = self.tables.codes(name, self.s.shapes)[self.shape]
        keys = self.tables.keys(name)
        table = np.empty(len(keys), dtype=object)
        for code in np.unique(codes).tolist():
            table[code] = make(keys[code])
        return table[codes]

    def event_id(self) -> pa.Array:
        return event_ids(self.f["id"], self.s.odd_ids)

    def timestamp(self) -> np.ndarray:
        micros = self.f["timestamp"] * 1e6
        return np.rint(micros, out=micros).astype("datetime64[us]")

    def streaming(self) -> np.ndarray:
        return self._per_row("streaming")

    def units(self) -> np.ndarray:
        f = self.f
        tokens = (f[name] for name in ("input", "output", "cache_read", "cache_write", "reasoning"))
        column = units_column(self._per_row("anthropic"), *tokens)
        column[np.flatnonzero(f["flags"] & NO_UNITS)] = lookup([{}])  # one shared {} for rows without units
        for i, own in self.s.units.items():
            column[i] = {name: dict(sides) for name, sides in own.items()}
        return column

    def cost_usd(self) -> np.ndarray:
        return np.where(self.has_payi, self.f["payi"], self.f["est"])

    def cost_source(self) -> np.ndarray:
        codes = np.ones(self.s.n, dtype=np.int8)  # COST_SOURCES: payi, estimate, unknown
        codes[np.isnan(self.f["est"])] = 2
        codes[self.has_payi] = 0
        return codes

    def http_status(self) -> pd.arrays.IntegerArray:
        http = self.f["http"]
        return nullable_int(http, http < 0)

    def limit_ids(self) -> np.ndarray:
        return self._nested("limit_ids", list)

    def properties(self) -> np.ndarray:
        return self._nested("properties", dict)

    def limit_states(self) -> np.ndarray:
        return lookup([dict(items) for items in self.s.limit_table] + [{}])[self.f["limits"]]  # -1: the last, {}

    def status(self) -> np.ndarray:
        return self.f["status"]

    def error(self) -> pa.Array:
        entries = np.full(self.s.n, -1, dtype=np.int64)
        entries[list(self.s.errors)] = np.arange(len(self.s.errors))
        return taken(pa.array(list(self.s.errors.values()), type=pa.large_string()), entries)

    def partial(self) -> np.ndarray:
        return (self.f["flags"] & PARTIAL).astype(bool)

    def input_tokens_estimated(self) -> np.ndarray:
        return (self.f["flags"] & ESTIMATED).astype(bool)
