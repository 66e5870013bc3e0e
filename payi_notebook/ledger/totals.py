"""A cell's badge summary straight from the records: no DataFrame for a handful of rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..events import STATUSES
from .records import LimitItems
from .schema import COST_SOURCES, SHAPE_POSITIONS, Totals

_RESOURCE = SHAPE_POSITIONS["resource"]


def summarize(records: np.ndarray, errors: int, limit_table: list[LimitItems], shapes: list[tuple[Any, ...]]) -> Totals:
    """``Totals`` of some rows' records (a structured array of ``schema.RECORD_DTYPE``)."""
    calls = len(records)
    payi, est = records["payi"], records["est"]
    has_payi = ~np.isnan(payi)
    has_est = ~has_payi & ~np.isnan(est)
    sources = (int(has_payi.sum()), int(has_est.sum()))
    unpriced = calls - sources[0] - sources[1]
    counts = dict(zip(COST_SOURCES, (*sources, unpriced)))
    used = [source for source, count in counts.items() if count]
    states: dict[str, str] = {}
    for code in records["limits"].tolist():
        if code >= 0:
            states.update(limit_table[code])
    statuses = np.bincount(records["status"].astype(np.intp), minlength=len(STATUSES))
    unpriced_shapes = records["shape"][~has_payi & ~has_est].tolist()
    return Totals(
        calls=calls,
        input_tokens=int(records["input"].sum()),
        output_tokens=int(records["output"].sum()),
        cache_read_tokens=int(records["cache_read"].sum()),
        cache_write_tokens=int(records["cache_write"].sum()),
        reasoning_tokens=int(records["reasoning"].sum()),
        cost_usd=float(payi[has_payi].sum() + est[has_est].sum()) if unpriced < calls or not calls else math.nan,
        unpriced=unpriced,
        cost_source=used[0] if len(used) == 1 else ("mixed" if used else "unknown"),
        statuses={status: int(count) for status, count in zip(STATUSES, statuses) if count},
        limit_states=states,
        errors=errors,
        unpriced_models=tuple(
            sorted({str(shapes[code][_RESOURCE]) for code in unpriced_shapes if shapes[code][_RESOURCE] is not None})
        ),
    )
