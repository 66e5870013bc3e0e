"""The frame of a ledger, built a chunk at a time and joined: sealed chunks are built once.

A long session reads ``df`` after every few calls; rebuilding a million rows each time
made a loop over the frame quadratic. Rows are grouped in ``store.CHUNK_ROWS``-row chunks;
a full chunk's column pieces are kept (``Pieces``) with the chunk's change counter, so
after an append only the open tail is built, and an update (status and cost arrive later
from delivery) rebuilds only its own chunk. Missing chunks next to each other are built in
one go, so a first build pays no per-chunk overhead. Joining is a copy per column (Arrow
text columns join without one); afterwards the kept pieces are views of the joined arrays,
so they cost no memory of their own.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .build import SHAPE_CATEGORIES, Columns, categories, fixed_dtype
from .schema import FIXED_CATEGORIES, LIMIT_ID, TEXT
from .shapes import ShapeTables
from .store import Snapshot, Store


class Pieces:
    """Built columns of sealed chunks: chunk -> (its change counter when built, column -> piece)."""

    def __init__(self) -> None:
        self.chunks: dict[int, tuple[int, dict[str, Any]]] = {}
        self.tables = ShapeTables()  # the per-shape tables every build of this store reads

    def valid(self, chunk: int, version: int, names: tuple[str, ...]) -> bool:
        kept = self.chunks.get(chunk)
        return kept is not None and kept[0] == version and all(name in kept[1] for name in names)


@dataclass(slots=True)
class _Plan:
    """What one frame needs, decided under the lock: snapshots of missing chunk runs and the tail."""

    version: int  # the ledger's version at that moment
    n: int
    runs: list[tuple[int, int, list[int], Snapshot]]  # first chunk, end chunk, their versions, snapshot
    tail: Snapshot | None  # None: the last run's snapshot goes on to the last row
    shapes: list[tuple[Any, ...]]


def _runs(missing: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive chunk numbers as (first, end) ranges."""
    start = prev = None
    for chunk in missing:
        if start is None or prev is None or chunk != prev + 1:
            if start is not None and prev is not None:
                yield start, prev + 1
            start = chunk
        prev = chunk
    if start is not None and prev is not None:
        yield start, prev + 1


def _plan(store: Store, pieces: Pieces, lock: threading.Lock, version: Callable[[], int], names: tuple[str, ...]) -> _Plan:
    size = store.chunk_rows
    with lock:
        n = store.n
        sealed = n // size
        versions = store.chunk_versions[:sealed].tolist()
        missing = [k for k in range(sealed) if not pieces.valid(k, versions[k], names)]
        ranges = list(_runs(missing))
        with_tail = bool(ranges) and ranges[-1][1] == sealed  # one snapshot for both: a first build is one build
        runs = [
            (a, b, versions[a:b], store.snapshot(names, a * size, n if with_tail and b == sealed else b * size))
            for a, b in ranges
        ]
        tail = None if with_tail else store.snapshot(names, sealed * size, n)
        return _Plan(version(), n, runs, tail, store.shapes[:])


def _build(s: Snapshot, tables: ShapeTables, names: tuple[str, ...]) -> dict[str, Any]:
    columns = Columns(s, tables)
    return {name: columns.shape if name == LIMIT_ID else columns.build(name) for name in names}


def _slice(piece: Any, start: int, stop: int) -> Any:
    return piece[start:stop]  # numpy, pandas and Arrow arrays all slice as views


def build_frame(
    store: Store, pieces: Pieces, lock: threading.Lock, version: Callable[[], int], columns: tuple[str, ...]
) -> tuple[int, pd.DataFrame]:
    """The frame of ``columns`` (``schema.FRAME_COLUMNS``), from kept pieces and what changed.

    The store is read under ``lock`` once (every kept piece is checked and every missing
    one copied out at the same moment), so the frame is one consistent state of the ledger:
    the one ``version()`` names then, returned with the frame.
    The cyclic GC is paused while building: a full build makes a million small acyclic
    containers (units dicts) that the collector would otherwise rescan over and over.
    """
    names = columns  # the piece of limit_id is the rows' shape codes, exploded once joined
    enabled = gc.isenabled()
    gc.disable()
    try:
        size = store.chunk_rows
        plan = _plan(store, pieces, lock, version, names)
        sealed = plan.n // size
        whole = tail = None
        for first, end, versions, snapshot in plan.runs:
            built = _build(snapshot, pieces.tables, names)
            for k in range(first, end):
                at = (k - first) * size
                kept = pieces.chunks.get(k)
                merged = dict(kept[1]) if kept is not None and kept[0] == versions[k - first] else {}
                merged.update({name: _slice(piece, at, at + size) for name, piece in built.items()})
                pieces.chunks[k] = (versions[k - first], merged)
            if plan.tail is None and end == sealed:  # this run went on to the last row
                tail = {name: _slice(piece, (end - first) * size, snapshot.n) for name, piece in built.items()}
                whole = built if first == 0 else None  # every row in one build: nothing to join
        for k in [k for k in pieces.chunks if k >= sealed]:  # a reset or a shorter store: not ours any more
            del pieces.chunks[k]
        if plan.tail is not None:
            tail = _build(plan.tail, pieces.tables, names)
        assert tail is not None
        data = {}
        for name in names:
            if whole is not None:
                data[name] = _column(name, whole[name], pieces.tables, plan.shapes)
                continue
            parts = [pieces.chunks[k][1][name] for k in range(sealed)] + [tail[name]]
            joined = _concat(parts)
            data[name] = _column(name, joined, pieces.tables, plan.shapes)
            if sealed and not isinstance(joined, pa.ChunkedArray):  # kept pieces become views: no second copy
                for k in range(sealed):
                    pieces.chunks[k][1][name] = _slice(joined, k * size, (k + 1) * size)
        return plan.version, _frame(data, columns, plan, pieces.tables)
    finally:
        if enabled:
            gc.enable()


def _concat(parts: list[Any]) -> Any:
    """Pieces joined in their own form: Arrow text chunk by chunk (no copy), the rest copied once."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, pa.Array):
        return pa.chunked_array(parts, type=pa.large_string())
    if isinstance(first, pd.api.extensions.ExtensionArray):
        return type(first)._concat_same_type(parts)
    return np.concatenate(parts)


def _column(name: str, joined: Any, tables: ShapeTables, shapes: list[tuple[Any, ...]]) -> Any:
    """A joined piece in the frame's dtype."""
    if isinstance(joined, (pa.Array, pa.ChunkedArray)):
        return pd.array(joined, dtype=TEXT)
    if name in SHAPE_CATEGORIES:
        return pd.Categorical.from_codes(joined, dtype=tables.dtype(name, shapes), validate=False)
    if name in FIXED_CATEGORIES:
        return pd.Categorical.from_codes(joined, dtype=fixed_dtype(name), validate=False)
    if name == "timestamp":
        return pd.DatetimeIndex(joined).tz_localize("UTC")
    return joined


def _frame(data: dict[str, Any], columns: tuple[str, ...], plan: _Plan, tables: ShapeTables) -> pd.DataFrame:
    shape = data.pop(LIMIT_ID, None)
    frame = pd.DataFrame(data, index=pd.RangeIndex(plan.n), copy=False)
    if LIMIT_ID in columns:
        rows, limit_id = explode_limit_ids(shape, tables.codes("limit_ids", plan.shapes), tables.keys("limit_ids"))
        frame = frame.take(rows)
        frame.insert(columns.index(LIMIT_ID), LIMIT_ID, limit_id)
    return frame


def explode_limit_ids(shape: np.ndarray, codes: np.ndarray, keys: list[tuple[str, ...]]) -> tuple[np.ndarray, pd.Categorical]:
    """``limit_ids`` exploded: the row of each (row, limit id) pair and the limit ids.

    ``codes`` numbers each shape's ids, ``keys`` holds them. Worked out per distinct id
    list (a few) and spread over rows with numpy: a list's ids sit at ``starts[code]`` in
    one flat code table, an empty list has one null entry.
    """
    per = [ids or (None,) for ids in keys]
    flat, dtype = categories(limit_id for ids in per for limit_id in ids)
    sizes = np.array([len(ids) for ids in per], dtype=np.intp)
    starts = np.cumsum(sizes) - sizes
    lists = codes[shape]
    counts = sizes[lists]
    rows = np.repeat(np.arange(len(shape)), counts)
    firsts = np.cumsum(counts) - counts  # each row's first exploded position
    positions = np.arange(len(rows)) - np.repeat(firsts, counts)
    values = flat[np.repeat(starts[lists], counts) + positions]
    return rows, pd.Categorical.from_codes(values, dtype=dtype)
