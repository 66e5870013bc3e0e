"""What a ledger row is: the frame's columns and dtypes, and the fixed-size record a row is stored as.

One module so that encoding (``records``), storage (``store``) and building (``build``) agree
on a single layout: a column added here is checked against every place that reads it
(``COLUMN_FIELDS`` must cover ``FRAME_COLUMNS``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..events import STATUSES

COLUMNS: tuple[str, ...] = (
    "event_id",
    "execution_count",
    "cell_id",
    "timestamp",
    "mode",
    "provider",
    "category",
    "resource",
    "provider_response_id",
    "operation",
    "streaming",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "units",
    "est_cost_usd",
    "payi_cost_usd",
    "cost_usd",
    "cost_source",
    "latency_ms",
    "ttft_ms",
    "http_status",
    "use_case_name",
    "use_case_id",
    "use_case_step",
    "user_id",
    "account_name",
    "limit_ids",
    "properties",
    "payi_request_id",
    "limit_states",
    "status",
    "error",
    "partial",
    "input_tokens_estimated",
    "use_case_version",
    "provider_uri",
    "xproxy_json",
    "worker",
    "deployment",
)
"""Every column of ``Ledger.df``, in order: the DESIGN.md contract, then the extras."""

LIMIT_ID = "limit_id"
FRAME_COLUMNS: tuple[str, ...] = (*COLUMNS, LIMIT_ID)
"""What ``Ledger.frame`` builds: ``COLUMNS`` and ``limit_id`` (``limit_ids`` exploded, one row per limit id)."""

COST_SOURCES: tuple[str, ...] = ("payi", "estimate", "unknown")
NESTED_COLUMNS: tuple[str, ...] = ("units", "limit_ids", "properties", "limit_states")
UPDATABLE: frozenset[str] = frozenset(
    {
        "status",
        "error",
        "est_cost_usd",
        "payi_cost_usd",
        "payi_request_id",
        "limit_states",
        "xproxy_result",
        "http_status",
        "provider_response_id",
    }
)


class UnknownColumnError(KeyError, ValueError):
    """A column name ``Ledger.frame`` does not know; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RowRef(NamedTuple):
    """A stable handle for one row: survives later appends, goes stale after ``reset()``."""

    generation: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, as RowRef always has


@dataclass(frozen=True, slots=True)
class Totals:
    """A quick summary of some rows (a cell's badge) without building the DataFrame.

    ``cost_usd`` sums every row's known cost (Pay-i's, else the estimate); ``unpriced`` counts
    rows with neither, and ``cost_usd`` is NaN only when there are rows and none is priced.
    ``cost_source`` is ``payi``/``estimate``/``unknown`` when all rows agree, else ``mixed``
    (``unknown`` for no rows). ``limit_states`` keeps, per limit id, the state on the latest
    row that reported one; ``errors`` counts rows with an error message; ``unpriced_models``
    names the models of the unpriced rows (the reason a badge gives).
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    cost_source: str = "unknown"
    statuses: dict[str, int] = field(default_factory=dict)
    limit_states: dict[str, str] = field(default_factory=dict)
    errors: int = 0
    unpriced_models: tuple[str, ...] = ()


# -- frame dtypes ------------------------------------------------------------------------------

TEXT = pd.StringDtype(na_value=np.nan)  # pandas 3's default "str" (Arrow-backed)
TEXT_COLUMNS = ("event_id", "provider_response_id", "payi_request_id", "error", "xproxy_json")
CATEGORY_COLUMNS = (
    "cell_id",
    "mode",
    "provider",
    "category",
    "resource",
    "operation",
    "cost_source",
    "use_case_name",
    "use_case_id",
    "use_case_step",
    "user_id",
    "account_name",
    "status",
    "provider_uri",
    "worker",
    "deployment",
)
FIXED_CATEGORIES = {"status": STATUSES, "cost_source": COST_SOURCES}
INT_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
NULLABLE_INT_COLUMNS = ("execution_count", "http_status", "use_case_version")
FLOAT_COLUMNS = ("est_cost_usd", "payi_cost_usd", "cost_usd", "latency_ms", "ttft_ms")
BOOL_COLUMNS = ("streaming", "partial", "input_tokens_estimated")

# -- the stored record -------------------------------------------------------------------------

# One row's record: field, struct code. Little-endian, unpadded, so numpy reads it in place.
FIELDS = (
    ("id", "16s"),  # event id, 16 raw bytes (zeros when kept verbatim in the store's odd ids)
    ("shape", "i"),
    ("response", "i"),  # entry in the response-id heap, -1 = none
    ("request", "i"),  # entry in the request-id heap, -1 = none
    ("limits", "i"),  # interned limit states, -1 = none
    ("xproxy", "i"),  # entry in the xproxy_result (JSON) heap, -1 = none
    ("timestamp", "d"),  # epoch seconds
    ("input", "q"),
    ("output", "q"),
    ("cache_read", "q"),
    ("cache_write", "q"),
    ("reasoning", "q"),
    ("est", "d"),
    ("payi", "d"),
    ("latency", "d"),
    ("ttft", "d"),
    ("http", "h"),  # -1 = unknown
    ("status", "b"),  # index into STATUSES
    ("flags", "B"),  # PARTIAL | NO_UNITS | ESTIMATED
)
RECORD = struct.Struct("<" + "".join(code for _, code in FIELDS))
RECORD_DTYPE = np.dtype([(name, "V16" if code == "16s" else "<" + code) for name, code in FIELDS])
OFFSETS = {name: struct.calcsize("<" + "".join(code for _, code in FIELDS[:i])) for i, (name, _) in enumerate(FIELDS)}
SETTERS = {name: struct.Struct("<" + code).pack_into for name, code in FIELDS}
assert RECORD.size == RECORD_DTYPE.itemsize

PARTIAL = 1
NO_UNITS = 2
ESTIMATED = 4  # input tokens estimated from the request
STATUS_CODES = {status: code for code, status in enumerate(STATUSES)}
HEAPS = ("response", "request", "xproxy")  # record fields that are entries in a string heap

# A shape: what a cell's calls share, one interned tuple (these fields, then the Context).
SHAPE_TYPES = (
    ("mode", str, False),
    ("provider", str, False),
    ("category", str, False),
    ("resource", str, True),
    ("operation", str, False),
    ("streaming", bool, False),
    ("cell_id", str, True),
    ("execution_count", int, True),
    ("provider_uri", str, True),
    ("worker", str, True),
    ("deployment", str, True),
)
SHAPE_POSITIONS = {name: i for i, (name, _, _) in enumerate(SHAPE_TYPES)}
CONTEXT_POSITION = len(SHAPE_TYPES)
CONTEXT_TEXT = ("use_case_name", "use_case_id", "use_case_step", "user_id", "account_name")

RECORD_COLUMNS = {  # columns that are one record field as it is
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache_read",
    "cache_write_tokens": "cache_write",
    "reasoning_tokens": "reasoning",
    "est_cost_usd": "est",
    "payi_cost_usd": "payi",
    "latency_ms": "latency",
    "ttft_ms": "ttft",
}
COLUMN_HEAPS = {"provider_response_id": "response", "payi_request_id": "request", "xproxy_json": "xproxy"}
COLUMN_FIELDS: dict[str, tuple[str, ...]] = {  # the record fields each column reads
    **dict.fromkeys((*SHAPE_POSITIONS, *CONTEXT_TEXT, "use_case_version", "limit_ids", "properties", LIMIT_ID), ("shape",)),
    **{name: (record,) for name, record in (*RECORD_COLUMNS.items(), *COLUMN_HEAPS.items())},
    "event_id": ("id",),
    "timestamp": ("timestamp",),
    "units": ("shape", "input", "output", "cache_read", "cache_write", "reasoning", "flags"),
    "cost_usd": ("est", "payi"),
    "cost_source": ("est", "payi"),
    "http_status": ("http",),
    "limit_states": ("limits",),
    "status": ("status",),
    "error": (),
    "partial": ("flags",),
    "input_tokens_estimated": ("flags",),
}
assert set(COLUMN_FIELDS) == set(FRAME_COLUMNS)


def requested(columns: Sequence[str]) -> tuple[str, ...]:
    """``Ledger.frame``'s column list, checked: known names, each once."""
    if isinstance(columns, str):
        raise TypeError(f"Ledger.frame() takes a list of column names, not the string {columns!r}")
    names = tuple(columns)
    unknown = [name for name in names if not isinstance(name, str) or name not in COLUMN_FIELDS]
    if unknown:
        raise UnknownColumnError(f"unknown ledger column(s) {unknown}; valid: {', '.join(FRAME_COLUMNS)}")
    if len(set(names)) < len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"Ledger.frame() got column(s) {repeated} more than once")
    return names
