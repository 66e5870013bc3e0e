"""The ledger: one row per captured provider call, and its pandas view.

``append`` sits on the user's request path and a long session can hold millions of rows, so
rows are not kept as event objects. Each row is:

- one fixed-size binary record (``_FIELDS``: raw event id, codes, timestamp, token counts,
  costs, latencies, HTTP status, status, flags) packed with ``struct`` into one bytearray and
  read back at build time as a numpy structured array; NaN / -1 stand for "unknown";
- a "shape" code: everything a cell's calls share (mode, provider, category, model,
  operation, streaming, cell, execution count, provider URI and the ``Context``, interned by
  identity and kept alive by the table) is one dictionary-encoded tuple;
- entries in append-only UTF-8 heaps for the provider response id, the Pay-i request id and
  ``xproxy_result`` (as compact JSON: ~300 bytes instead of ~2.5 KB of dicts), rendered as
  Arrow string arrays without a Python object per row.

``units`` maps are not kept: the common shapes follow from the token counts
(``_compact_units``); a map that does not rebuild exactly is kept as given. Limit-state maps
are interned; errors, odd event ids and kept units maps are sparse dicts.

``df`` builds from a snapshot copied under the lock (appends wait for those copies only, not
for the build) and is cached until the next change. ``frame(columns)`` builds just some
columns the same way (aggregates over a million rows need a few, not the nested objects).
A build makes one object for rows whose nested value is equal (the ``properties`` and
``limit_ids`` of a scope, a units map repeated across calls), so they are read-only by
convention.
"""

from __future__ import annotations

import ast
import gc
import itertools
import json
import logging
import math
import struct
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .context import Context
from .events import STATUSES, UsageEvent
from .units import ANTHROPIC_LARGE_CONTEXT_TOKENS, LARGE_CONTEXT_SUFFIX, Units

log = logging.getLogger(__name__)

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


DfView = Callable[[pd.DataFrame, tuple[int, int, int]], pd.DataFrame]
_DF_VIEWS: list[DfView] = []
_LEDGER_UIDS = itertools.count(1)


def add_df_view(view: DfView) -> None:
    """Pass every ``Ledger.df`` through ``view(frame, key)``; it returns a new frame, never changes its argument.

    ``key`` is the same for every access while the ledger is unchanged, so a view can cache its work.
    """
    if view not in _DF_VIEWS:
        _DF_VIEWS.append(view)


class UnknownColumnError(KeyError, ValueError):
    """A column name ``Ledger.frame`` does not know; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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

_TEXT = pd.StringDtype(na_value=np.nan)  # pandas 3's default "str" (Arrow-backed)
_TEXT_COLUMNS = ("event_id", "provider_response_id", "payi_request_id", "error", "xproxy_json")
_CATEGORY_COLUMNS = (
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
_FIXED_CATEGORIES = {"status": STATUSES, "cost_source": COST_SOURCES}
_INT_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_NULLABLE_INT_COLUMNS = ("execution_count", "http_status", "use_case_version")
_FLOAT_COLUMNS = ("est_cost_usd", "payi_cost_usd", "cost_usd", "latency_ms", "ttft_ms")
_BOOL_COLUMNS = ("streaming", "partial", "input_tokens_estimated")

# One row's record: field, struct code. Little-endian, unpadded, so numpy reads it in place.
_FIELDS = (
    ("id", "16s"),  # event id, 16 raw bytes (zeros when kept in _odd_ids)
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
    ("flags", "B"),  # _PARTIAL | _NO_UNITS | _ESTIMATED
)
_RECORD = struct.Struct("<" + "".join(code for _, code in _FIELDS))
_RECORD_DTYPE = np.dtype([(name, "V16" if code == "16s" else "<" + code) for name, code in _FIELDS])
_OFFSETS = {name: _RECORD_DTYPE.fields[name][1] for name, _ in _FIELDS}
_SETTERS = {name: struct.Struct("<" + code).pack_into for name, code in _FIELDS}
_XPROXY = struct.Struct("<i")
# update() names stored in the record as they are, and as entries of a string heap
_RECORD_FIELD = {"status": "status", "http_status": "http", "est_cost_usd": "est", "payi_cost_usd": "payi"}
_HEAP_FIELD = {"payi_request_id": "request", "provider_response_id": "response", "xproxy_result": "xproxy"}
assert _RECORD.size == _RECORD_DTYPE.itemsize

_STATUS_CODES = {status: code for code, status in enumerate(STATUSES)}
_NAN = math.nan
_NO_ID = bytes(16)
_HEX_SLICE = 1 << 18  # octets rendered per step in _event_ids
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint16)  # octet -> its 2 hex digits
_PARTIAL = 1
_NO_UNITS = 2
_ESTIMATED = 4  # input tokens estimated from the request
_new_tuple = tuple.__new__
_ANTHROPIC_LAYOUT = frozenset({"anthropic", "azure_anthropic"})  # providers whose units follow Anthropic's layout

# Units map layouts: text key, then two optional one-sided entries (key, side).
_LAYOUTS = (
    ("text", "text_cache_read", "input", "reasoning", "output"),  # OpenAI and the default
    ("text", "text_cache_write", "input", "text_cache_read", "input"),  # Anthropic
    tuple(part + LARGE_CONTEXT_SUFFIX if part.startswith("text") else part for part in
          ("text", "text_cache_write", "input", "text_cache_read", "input")),  # Anthropic, >= 200k prompt
)  # fmt: skip


def _units_map(layout: int, text_in: int, text_out: int, first: int, second: int) -> Units:
    text, first_key, first_side, second_key, second_side = _LAYOUTS[layout]
    units: Units = {text: {"input": text_in, "output": text_out}}
    if first:
        units[first_key] = {first_side: first}
    if second:
        units[second_key] = {second_side: second}
    return units


def _compact_units(anthropic: bool, inp: int, out: int, read: int, write: int, reasoning: int) -> Units:
    """The units map the ledger rebuilds from token counts alone.

    It equals ``units.units_from_tokens`` for the maps capture produces, at a tenth of the
    cost (a build renders it for every row, vectorised in ``_units_column``). A row whose
    map is not exactly this one keeps its own, so the rebuild is exact whatever the input.
    """
    if anthropic:
        return _units_map(1 + (inp >= ANTHROPIC_LARGE_CONTEXT_TOKENS), inp - read - write, out, write, read)
    return _units_map(0, inp - read, out - reasoning, read, reasoning)


class RowRef(NamedTuple):
    """A stable handle for one row: survives later appends, goes stale after ``reset()``."""

    generation: int
    index: int


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


class _Subscription:
    __slots__ = ("callback", "failed")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.failed = False

    def run(self) -> None:
        try:
            self.callback()
        except Exception:
            # The first failure gets a traceback; repeating it on every append would flood the notebook.
            if self.failed:
                log.debug("ledger subscriber %r failed again", self.callback, exc_info=True)
            else:
                self.failed = True
                log.exception("ledger subscriber %r failed (later failures are logged at DEBUG)", self.callback)


class _Heap:
    """Append-only UTF-8 strings; rows hold entry numbers. Rendered as one Arrow array."""

    __slots__ = ("data", "ends")

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array("q", [0])

    def add(self, encoded: bytes) -> int:
        """Store one string; returns its entry number."""
        self.data += encoded
        self.ends.append(len(self.data))
        return len(self.ends) - 2

    def snapshot(self) -> tuple[bytes, bytes]:
        return bytes(self.data), self.ends.tobytes()


def _utf8(name: str, value: Any) -> bytes | None:
    if value is None:
        return None
    if type(value) is not str:
        raise TypeError(f"{name} must be str or None, got {type(value).__name__}")
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{name} {value!r} is not valid text (lone surrogate)") from None


_to_json = orjson.dumps  # compact UTF-8 JSON bytes; an order of magnitude cheaper on the append path


def _xproxy_fields(result: Any) -> tuple[bytes, bytes | None, tuple[tuple[str, str], ...] | None]:
    """An ``xproxy_result`` as UTF-8 JSON, with the Pay-i request id and limit states it carries."""
    if not isinstance(result, Mapping):
        raise TypeError(f"xproxy_result must be a dict, got {type(result).__name__}")
    try:
        encoded = _to_json(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"xproxy_result must be JSON data as Pay-i sends it: {exc}") from None
    request_id = result.get("request_id")
    limits = result.get("limits")
    states = None
    if isinstance(limits, Mapping):
        states = tuple(
            (str(limit_id), status["state"])
            for limit_id, status in limits.items()
            if isinstance(status, Mapping) and isinstance(status.get("state"), str)
        )
    return encoded, (_utf8("request_id", request_id) if isinstance(request_id, str) else None), states


def _limit_items(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"limit_states must be a dict of limit id -> state string, got {value!r}")
    return tuple(value.items())


_SHAPE_TYPES = (
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
_RESOURCE = [name for name, _, _ in _SHAPE_TYPES].index("resource")
_CONTEXT_TEXT = ("use_case_name", "use_case_id", "use_case_step", "user_id", "account_name")


def _shape_problem(values: tuple[Any, ...], ctx: Any) -> str:
    """What is wrong with a new shape's fields ("" if nothing): a bad one would break every build."""
    for (name, kind, optional), value in zip(_SHAPE_TYPES, values):
        if (value is None and not optional) or (
            value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool)))
        ):
            return f"UsageEvent.{name} must be {kind.__name__}{' or None' if optional else ''}, got {value!r}"
    if not isinstance(ctx, Context):
        return f"UsageEvent.context must be a Context, got {type(ctx).__name__}"
    for name in _CONTEXT_TEXT:
        if not isinstance(getattr(ctx, name), (str, type(None))):
            return f"Context.{name} must be str or None, got {getattr(ctx, name)!r}"
    version = ctx.use_case_version
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        return f"Context.use_case_version must be int or None, got {version!r}"
    for name, value in (("UsageEvent.execution_count", values[_SHAPE_POSITIONS["execution_count"]]), ("Context.use_case_version", version)):
        if value is not None and not _INT64_MIN <= value <= _INT64_MAX:  # the frame's Int64 column
            return f"{name} is out of range: {value!r}"
    if not all(isinstance(limit_id, str) for limit_id in ctx.limit_ids):
        return f"Context.limit_ids must be strings, got {ctx.limit_ids!r}"
    if not isinstance(ctx.properties, Mapping):
        return f"Context.properties must be a mapping, got {type(ctx.properties).__name__}"
    return ""


def _cost(name: str, value: Any) -> float:
    if value is None:
        return _NAN
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of USD or None, got {type(value).__name__}")
    return float(value)


def _prepare_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated, storage-ready values for ``update``; raises before anything is touched."""
    unknown = changes.keys() - UPDATABLE
    if unknown:
        raise TypeError(f"Ledger.update() got unknown field(s) {sorted(unknown)}; updatable: {sorted(UPDATABLE)}")
    out: dict[str, Any] = {}
    if changes.get("xproxy_result") is not None:
        out["xproxy_result"], request_id, states = _xproxy_fields(changes["xproxy_result"])
        if request_id is not None:
            out["payi_request_id"] = request_id
        if states is not None:
            out["limit_states"] = states
    for name, value in changes.items():
        if name == "status":
            if value not in _STATUS_CODES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {value!r}")
            out[name] = _STATUS_CODES[value]
        elif name in ("est_cost_usd", "payi_cost_usd"):
            out[name] = _cost(name, value)
        elif name == "http_status":
            if value is not None and (type(value) is not int or not 0 <= value <= 32767):
                raise ValueError(f"http_status must be an HTTP status code or None, got {value!r}")
            out[name] = -1 if value is None else value
        elif name == "limit_states":
            out[name] = _limit_items(value)
        elif name in ("payi_request_id", "provider_response_id"):
            out[name] = _utf8(name, value)
        elif name == "error":
            if value is not None and type(value) is not str:
                raise TypeError(f"error must be str or None, got {type(value).__name__}")
            out[name] = value
        elif value is None:  # xproxy_result, encoded above when given
            out[name] = None
    return out


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _failed_row(error: str, event: Any = None) -> UsageEvent:
    """A row standing for a call whose event could not be built or stored, with why: the row
    is kept (so no later row shifts and the call is not silently lost), its bad values not."""
    event_id = getattr(event, "event_id", None)
    if type(event_id) is not str or not event_id:
        return UsageEvent(provider="unknown", category="unknown", operation="unknown", status="failed", error=error)
    return UsageEvent(
        event_id=event_id, provider="unknown", category="unknown", operation="unknown", status="failed", error=error
    )


class Ledger:
    """Every captured call as one row; thread-safe appends and updates, a cached DataFrame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._subscribers: tuple[_Subscription, ...] = ()
        self._generation = 0
        self._version = 0
        self._frames: dict[tuple[str, ...], tuple[int, pd.DataFrame]] = {}  # by column list: (version, frame)
        self._uid = next(_LEDGER_UIDS)  # names this ledger in df views' cache keys (an id() is reused after GC)
        self._filling = threading.Lock()  # one materialize() at a time keeps rows in reservation order
        self._clear()

    def _clear(self) -> None:
        """Fresh, empty storage (new containers, so a reset gives the memory back)."""
        self._n = 0
        self._reserved = 0  # rows handed out: filled (``_n``) plus those waiting in ``_pending``
        self._pending: deque[tuple[RowRef, Callable[[], UsageEvent]]] = deque()
        self._records = bytearray()
        self._responses = _Heap()
        self._requests = _Heap()
        self._xproxies = _Heap()
        self._odd_ids: dict[int, str] = {}
        self._units: dict[int, Units] = {}
        self._errors: dict[int, str] = {}
        self._shapes: list[tuple[Any, ...]] = []
        self._shape_codes: dict[tuple[Any, ...], int] = {}
        self._limit_table: list[tuple[tuple[str, str], ...]] = []
        self._limit_codes: dict[tuple[tuple[str, str], ...], int] = {}

    def append(self, event: UsageEvent) -> RowRef:
        """Add one call as a row; O(1), thread-safe. A malformed event is stored as a ``failed``
        row whose ``error`` says what was wrong: no single row may make the ledger unreadable,
        and none is dropped silently.

        ``payi_request_id`` and ``limit_states`` start from ``event.xproxy_result`` when
        capture already has one (proxy mode).
        """
        try:
            return self._add(event, None)
        except TypeError as exc:
            log.warning("payi_notebook: a ledger row could not be stored as given: %s", exc)
            return self._add(_failed_row(f"this call's row could not be stored: {exc}", event), None)

    def append_later(self, make: Callable[[], UsageEvent]) -> RowRef:
        """Reserve the next row now; ``make()`` builds its event when the row is first needed.

        Capture's hot path only reserves. Rows are filled in reservation order by
        ``materialize()``, which every read and update runs first and the flusher runs in the
        background. ``make`` should not raise; if it does, the row records the failure.
        """
        with self._lock:
            ref = self._queue(make)
        for subscription in self._subscribers:
            subscription.run()
        return ref

    def _queue(self, make: Callable[[], UsageEvent]) -> RowRef:
        """Reserve a row for ``make`` (caller holds the lock)."""
        ref = _new_tuple(RowRef, (self._generation, self._reserved))
        self._reserved += 1
        self._pending.append((ref, make))
        return ref

    def materialize(self) -> None:
        """Fill every reserved row whose event was deferred, in order (no-op when none are)."""
        if not self._pending:
            return
        with self._filling:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    ref, make = self._pending.popleft()
                try:
                    self._add(make(), ref)
                except Exception as exc:  # the row must still be filled, or later rows would shift
                    log.warning("payi_notebook: building a deferred ledger row failed: %r", exc)
                    self._add(_failed_row(f"capture failed: {exc!r}"), ref)

    def _add(self, event: UsageEvent, reserved: RowRef | None) -> RowRef:
        """Append ``event``: as a fresh row (None), or into the row ``reserved`` for it."""
        try:
            ctx = event.context
            provider = event.provider
            key = (
                event.mode,
                provider,
                event.category,
                event.resource,
                event.operation,
                event.streaming,
                event.cell_id,
                event.execution_count,
                event.provider_uri,
                event.worker,
                event.deployment,
                id(ctx),
            )
            status = _STATUS_CODES[event.status]
            inp, out, read, write, reasoning = event.tokens
            units = event.units
            flags = (_PARTIAL if event.partial else 0) | (_ESTIMATED if event.input_estimated else 0)
            own_units = None
            if not units:
                flags |= _NO_UNITS
            elif units != _compact_units(provider in _ANTHROPIC_LAYOUT, inp, out, read, write, reasoning):
                own_units = {name: dict(sides) for name, sides in units.items()}
            event_id = event.event_id
            raw = None
            if type(event_id) is str and len(event_id) == 32 and (event_id.islower() or event_id.isdigit()):
                try:
                    raw = bytes.fromhex(event_id)
                except ValueError:
                    pass
                if raw is not None and len(raw) != 16:
                    raw = None
            elif type(event_id) is not str:
                raise TypeError(f"event_id must be str, got {type(event_id).__name__}")
            response = event.provider_response_id
            if response is not None:
                if type(response) is not str:
                    raise TypeError(f"provider_response_id must be str or None, got {type(response).__name__}")
                response = response.encode()
            result = event.xproxy_result
            xproxy, request, states = (None, None, None) if result is None else _xproxy_fields(result)
            error = event.error
            if error is not None and type(error) is not str:
                raise TypeError(f"error must be str or None, got {type(error).__name__}")
            est, payi = event.est_cost_usd, event.payi_cost_usd
            latency, ttft, http = event.latency_ms, event.ttft_ms, event.http_status
            timestamp = event.timestamp
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise TypeError(f"Ledger.append needs a well-formed UsageEvent: {exc}") from None
        with self._lock:
            n = self._n
            if reserved is None:
                if self._reserved != n:  # earlier rows are still being filled: keep the order
                    return self._queue(lambda: event)
            elif reserved.generation != self._generation:
                return reserved  # a reset dropped this row while it was being built
            try:
                shape = self._shape_codes.get(key, -1)
            except TypeError:
                problem = _shape_problem(key[:-1], ctx) or "a UsageEvent field is not hashable"
                raise TypeError(f"Ledger.append: {problem}") from None
            new_shape = shape < 0
            if new_shape:
                problem = _shape_problem(key[:-1], ctx)
                if problem:
                    raise TypeError(f"Ledger.append: {problem}")
                shape = len(self._shapes)
            limit_code = -1
            new_limits = False
            if states:
                limit_code = self._limit_codes.get(states, -1)
                if limit_code < 0:
                    limit_code, new_limits = len(self._limit_table), True
            responses, requests = self._responses.ends, self._requests
            try:
                record = _RECORD.pack(
                    _NO_ID if raw is None else raw,
                    shape,
                    -1 if response is None else len(responses) - 1,
                    -1 if request is None else len(requests.ends) - 1,
                    limit_code,
                    -1 if xproxy is None else len(self._xproxies.ends) - 1,
                    timestamp,
                    inp,
                    out,
                    read,
                    write,
                    reasoning,
                    _NAN if est is None else est,
                    _NAN if payi is None else payi,
                    _NAN if latency is None else latency,
                    _NAN if ttft is None else ttft,
                    -1 if http is None else http,
                    status,
                    flags,
                )
            except struct.error as exc:
                raise TypeError(f"Ledger.append got a UsageEvent field of the wrong type or range: {exc}") from None
            self._records += record
            if response is not None:
                data = self._responses.data
                data += response
                responses.append(len(data))
            if request is not None:
                requests.add(request)
            if xproxy is not None:
                self._xproxies.add(xproxy)
            if raw is None:
                self._odd_ids[n] = event_id
            if new_shape:
                self._shape_codes[key] = shape
                self._shapes.append(key[:-1] + (ctx,))
            if new_limits:
                self._limit_codes[states] = limit_code
                self._limit_table.append(states)
            if own_units is not None:
                self._units[n] = own_units
            if error is not None:
                self._errors[n] = error
            self._n = n + 1
            if reserved is None:
                self._reserved = n + 1
            self._version += 1
            generation = self._generation
        for subscription in self._subscribers:
            subscription.run()
        return _new_tuple(RowRef, (generation, n))

    def update(self, ref: RowRef, **changes: Any) -> bool:
        """Change fields of one row; False (and nothing changed) if ``ref`` predates a reset.

        Updatable: ``UPDATABLE``; any other name raises TypeError. ``xproxy_result`` also sets
        ``payi_request_id`` and ``limit_states`` from its ``request_id`` and ``limits`` unless
        those are passed too. None means "unknown" for costs and ``http_status`` and clears
        ``limit_states``/``error``.
        """
        values = _prepare_changes(changes)
        generation, index = ref
        if index >= self._n:
            self.materialize()
        with self._lock:
            if generation != self._generation or not 0 <= index < self._n:
                return False
            if not values:
                return True
            for name, value in values.items():
                self._set(index, name, value)
            self._version += 1
        for subscription in self._subscribers:
            subscription.run()
        return True

    def _set(self, index: int, name: str, value: Any) -> None:
        at = index * _RECORD.size
        if name in _RECORD_FIELD:
            column = _RECORD_FIELD[name]
            _SETTERS[column](self._records, at + _OFFSETS[column], value)
        elif name in _HEAP_FIELD:
            column = _HEAP_FIELD[name]
            entry = -1 if value is None else self._heap(column).add(value)
            _SETTERS[column](self._records, at + _OFFSETS[column], entry)
        elif name == "error":
            if value is None:
                self._errors.pop(index, None)
            else:
                self._errors[index] = value
        elif name == "limit_states":
            code = -1
            if value:
                code = self._limit_codes.get(value, -1)
                if code < 0:
                    code = self._limit_codes[value] = len(self._limit_table)
                    self._limit_table.append(value)
            _SETTERS["limits"](self._records, at + _OFFSETS["limits"], code)

    def reset(self) -> None:
        """Drop every row; refs handed out before become stale."""
        with self._lock:
            stale, self._frames = self._frames, {}
            self._clear()
            self._generation += 1
            self._version += 1
        del stale  # a big frame is freed outside the lock
        for subscription in self._subscribers:
            subscription.run()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after each change, on the thread that made it; returns the unsubscribe.

        Callbacks run on the request path: keep them O(1) (schedule work, don't build ``df``).
        An exception in one is logged and swallowed.
        """
        subscription = _Subscription(callback)
        with self._lock:
            self._subscribers += (subscription,)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscription)

        return unsubscribe

    def __len__(self) -> int:
        return self._reserved

    def __repr__(self) -> str:
        return f"<Ledger rows={self._reserved} generation={self._generation} version={self._version}>"

    @property
    def version(self) -> int:
        """Increments on every change (append, effective update, reset)."""
        return self._version

    @property
    def generation(self) -> int:
        """Increments on every reset; part of each RowRef."""
        return self._generation

    def xproxy_result(self, ref: RowRef) -> dict[str, Any] | None:
        """The row's ``xproxy_result`` (a fresh dict), None if unset or ``ref`` is stale."""
        self.materialize()
        generation, index = ref
        with self._lock:
            if generation != self._generation or not 0 <= index < self._n:
                return None
            (entry,) = _XPROXY.unpack_from(self._records, index * _RECORD.size + _OFFSETS["xproxy"])
            if entry < 0:
                return None
            heap = self._xproxies
            encoded = heap.data[heap.ends[entry] : heap.ends[entry + 1]]
        return json.loads(encoded)

    def totals(self, refs: Iterable[RowRef]) -> Totals:
        """Summary of the given rows; stale and repeated refs are ignored."""
        self.materialize()
        with self._lock:
            generation, n = self._generation, self._n
            rows = sorted({index for gen, index in refs if gen == generation and 0 <= index < n})
            records = np.frombuffer(self._records, dtype=_RECORD_DTYPE)[rows]  # fancy indexing copies
            errors = sum(i in self._errors for i in rows)
            limit_table = self._limit_table[:]
            shapes = self._shapes[:]
        payi, est = records["payi"], records["est"]
        has_payi = ~np.isnan(payi)
        has_est = ~has_payi & ~np.isnan(est)
        sources = (int(has_payi.sum()), int(has_est.sum()))
        unpriced = len(rows) - sources[0] - sources[1]
        counts = dict(zip(COST_SOURCES, (*sources, unpriced)))
        used = [source for source, count in counts.items() if count]
        states: dict[str, str] = {}
        for code in records["limits"].tolist():
            if code >= 0:
                states.update(limit_table[code])
        statuses = np.bincount(records["status"].astype(np.intp), minlength=len(STATUSES))
        return Totals(
            calls=len(rows),
            input_tokens=int(records["input"].sum()),
            output_tokens=int(records["output"].sum()),
            cache_read_tokens=int(records["cache_read"].sum()),
            cache_write_tokens=int(records["cache_write"].sum()),
            reasoning_tokens=int(records["reasoning"].sum()),
            cost_usd=float(payi[has_payi].sum() + est[has_est].sum()) if unpriced < len(rows) or not rows else _NAN,
            unpriced=unpriced,
            cost_source=used[0] if len(used) == 1 else ("mixed" if used else "unknown"),
            statuses={status: int(count) for status, count in zip(STATUSES, statuses) if count},
            limit_states=states,
            errors=errors,
            unpriced_models=tuple(sorted({
                str(shapes[code][_RESOURCE]) for code in records["shape"][~has_payi & ~has_est].tolist()
                if shapes[code][_RESOURCE] is not None
            })),
        )

    @property
    def df(self) -> pd.DataFrame:
        """All rows as a DataFrame (``COLUMNS``); its index is each row's ``RowRef.index``.

        Built on first access after a change, then cached; a stale frame (and its memory) is
        let go by the next build or ``reset``, never on the append path. Each access returns a
        shallow copy-on-write copy of the cached frame: a new object sharing the data, so
        setting values or adding columns never reaches the cache. ``xproxy_json`` is each
        row's ``xproxy_result`` as compact JSON text (``Ledger.xproxy_result(ref)`` parses it).

        The dicts and lists in ``units``, ``properties``, ``limit_ids`` and ``limit_states``
        are read-only by convention: one build makes a single object for rows whose value is
        equal (every row of a cell run shares its ``properties`` and ``limit_ids``, rows
        without units share one ``{}``), and copies of the frame share them too. Copy one
        (``dict(row["properties"])``) before changing it; the ledger itself never sees the
        change, and the next build makes fresh objects.
        """
        self.materialize()
        version, cached = self._cached(COLUMNS)
        frame = cached.copy(deep=False)  # copy-on-write: shares data until either side writes
        for view in _DF_VIEWS:  # e.g. analytics' KPI scores and annotations, kept outside the storage
            frame = view(frame, (self._uid, self._generation, version))
        return frame

    def frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """Only ``columns`` of ``df``, in that order, with its names, dtypes, values and index.

        Built from just what those columns read (record fields copied under the lock, no
        nested objects unless asked), so a few numeric and categorical columns of a million
        rows take a few tens of ms; cached per column list until the next change, like
        ``df``, and taken from ``df`` when that is already built for this version.

        ``limit_id`` (``FRAME_COLUMNS``, not in ``df``) explodes ``limit_ids`` for grouping:
        one row per (row, limit id), the row's index label repeated and the other requested
        columns with it; a row without limit ids appears once with a null ``limit_id``.
        So ``frame(["limit_id", "cost_usd"]).groupby("limit_id").sum()`` is each limit's
        cost (a call counts toward every limit it names). Unknown names raise
        ``UnknownColumnError`` (a ``KeyError`` and ``ValueError``) listing the valid ones.
        """
        names = _requested(columns)
        self.materialize()
        version = self._version
        cached = self._frames.get(names)
        if cached is None or cached[0] != version:
            full = self._frames.get(COLUMNS)
            if full is not None and full[0] == version and LIMIT_ID not in names:
                return full[1][list(names)]  # a new frame over the cached columns (copy-on-write)
            cached = self._cached(names)
        return cached[1].copy(deep=False)

    def _cached(self, names: tuple[str, ...]) -> tuple[int, pd.DataFrame]:
        """The (version, frame) of ``names`` for the current version, built if missing."""
        cached = self._frames.get(names)
        if cached is not None and cached[0] == self._version:
            return cached
        with self._build_lock:
            cached = self._frames.get(names)
            if cached is not None and cached[0] == self._version:
                return cached
            # stale frames go first (outside the append lock): the build reuses their memory
            self._frames = frames = {key: kept for key, kept in self._frames.items() if kept[0] == self._version}
            snapshot = self._snapshot(names)
            cached = (snapshot.version, _build(snapshot, names))
            if len(frames) >= _CACHED_FRAMES:  # the oldest partial frame goes, never df (the costly one)
                del frames[next(key for key in frames if key != COLUMNS)]
            frames[names] = cached
        return cached

    def _snapshot(self, names: tuple[str, ...]) -> _Snapshot:
        """What ``names`` read, copied under the lock: appends wait for these copies only.

        Only the record fields the columns read are copied out (every one of them, for
        ``df``, takes ~70 ms for a million rows), not the whole records first: that would
        add their size to the memory a build touches.
        """
        fields = {name for column in names for name in _COLUMN_FIELDS[column]}
        with self._lock:
            return _Snapshot(
                version=self._version,
                n=self._n,
                fields=_field_copies(self._records, fields),
                heaps={heap: self._heap(heap).snapshot() for column, heap in _COLUMN_HEAPS.items() if column in names},
                odd_ids=dict(self._odd_ids) if "event_id" in names else {},
                units=dict(self._units) if "units" in names else {},
                errors=dict(self._errors) if "error" in names else {},
                shapes=self._shapes[:],
                limit_table=self._limit_table[:],
            )

    def _heap(self, name: str) -> _Heap:
        return {"request": self._requests, "response": self._responses, "xproxy": self._xproxies}[name]

    def to_parquet(self, path: str | PathLike[str]) -> None:
        """Write ``df`` to Parquet so that ``read_parquet`` gives it back (see ``to_parquet``)."""
        to_parquet(self.df, path)

    def to_csv(self, path: str | PathLike[str]) -> None:
        """Write ``df`` to CSV so that ``read_csv`` gives it back."""
        self.df.to_csv(path, index=False)


_CACHED_FRAMES = 8  # column lists kept per version (the widgets ask for a few)
_COPY_BLOCK = 8192  # records per block in _field_copies: ~1 MB, cache-sized
_SHAPE_POSITIONS = {
    name: i for i, (name, _, _) in enumerate(_SHAPE_TYPES)
}  # mode, provider, category, resource, operation, streaming, cell_id, execution_count, provider_uri, worker, deployment
_RECORD_COLUMNS = {  # columns that are one record field as it is
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
_COLUMN_HEAPS = {"provider_response_id": "response", "payi_request_id": "request", "xproxy_json": "xproxy"}
_COLUMN_FIELDS: dict[str, tuple[str, ...]] = {  # the record fields each column reads
    **dict.fromkeys(
        (*_SHAPE_POSITIONS, *_CONTEXT_TEXT, "use_case_version", "limit_ids", "properties", LIMIT_ID), ("shape",)
    ),
    **{name: (record,) for name, record in (*_RECORD_COLUMNS.items(), *_COLUMN_HEAPS.items())},
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
assert set(_COLUMN_FIELDS) == set(FRAME_COLUMNS)


@dataclass(slots=True)
class _Snapshot:
    """What one build reads: record fields as arrays, heap copies, sparse maps, the tables."""

    version: int
    n: int
    fields: dict[str, np.ndarray]
    heaps: dict[str, tuple[bytes, bytes]]
    odd_ids: dict[int, str]
    units: dict[int, Units]
    errors: dict[int, str]
    shapes: list[tuple[Any, ...]]
    limit_table: list[tuple[tuple[str, str], ...]]


def _field_copies(records: bytearray, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Each named field of every record as its own array.

    Copied a block of records at a time, every field from the block while it is in the CPU
    cache: one pass over the records instead of one per field (~3x faster for all of them).
    """
    view = block = np.frombuffer(records, dtype=_RECORD_DTYPE)
    try:
        n = len(view)
        fields = {name: np.empty(n, dtype=_RECORD_DTYPE[name]) for name in names}
        for start in range(0, n, _COPY_BLOCK):
            block = view[start : start + _COPY_BLOCK]
            for name, column in fields.items():
                column[start : start + _COPY_BLOCK] = block[name]
        return fields
    finally:
        del view, block  # a bytearray with a buffer export cannot grow: release it before appends resume


def _requested(columns: Sequence[str]) -> tuple[str, ...]:
    """``frame``'s column list, checked: known names, each once."""
    if isinstance(columns, str):
        raise TypeError(f"Ledger.frame() takes a list of column names, not the string {columns!r}")
    names = tuple(columns)
    unknown = [name for name in names if not isinstance(name, str) or name not in _COLUMN_FIELDS]
    if unknown:
        raise UnknownColumnError(f"unknown ledger column(s) {unknown}; valid: {', '.join(FRAME_COLUMNS)}")
    if len(set(names)) < len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"Ledger.frame() got column(s) {repeated} more than once")
    return names


def _build(s: _Snapshot, names: tuple[str, ...]) -> pd.DataFrame:
    """The frame of ``names`` for a snapshot, with the cyclic GC paused.

    A full build makes a million small acyclic containers (units dicts); left on, the
    collector rescans them over and over and triples the build time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _frame(s, names)
    finally:
        if enabled:
            gc.enable()


def _frame(s: _Snapshot, names: tuple[str, ...]) -> pd.DataFrame:
    columns = _Columns(s)
    data = {name: columns.build(name) for name in names if name != LIMIT_ID}
    frame = pd.DataFrame(data, index=pd.RangeIndex(s.n), copy=False)
    if LIMIT_ID in names:
        rows, limit_id = columns.limit_id()
        frame = frame.take(rows)
        frame.insert(names.index(LIMIT_ID), LIMIT_ID, limit_id)
    return frame


def _text(values: Any) -> Any:
    return pd.array(values, dtype=_TEXT)


def _heap_column(heap: tuple[bytes, bytes], entries: np.ndarray) -> Any:
    """Row strings from a heap snapshot: one Arrow array over it, taken in row order (-1: null)."""
    data, ends = heap
    count = len(ends) // 8 - 1
    pool = pa.LargeStringArray.from_buffers(count, pa.py_buffer(ends), pa.py_buffer(data))
    if count == len(entries) and np.array_equal(entries, np.arange(count, dtype=entries.dtype)):
        return _text(pool)  # one entry per row, in order: no copy
    return _taken(pool, entries)


def _taken(pool: pa.Array, entries: np.ndarray) -> Any:
    """A text column of ``pool[entries]`` (int32 or int64), null where the entry is -1."""
    return _text(pool.take(pa.array(entries, mask=entries < 0, type=pa.from_numpy_dtype(entries.dtype))))


def _event_ids(raw: np.ndarray, odd: dict[int, str]) -> Any:
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
    return _text(ids)


def _categories(values: Iterable[Any]) -> tuple[np.ndarray, pd.CategoricalDtype]:
    """Codes of ``values`` (-1 for None) and a text category dtype of the distinct ones, first seen first.

    The codes have the narrowest type pandas would convert them to, so indexing them by row
    makes the final codes array at once.
    """
    index: dict[Any, int] = {}
    codes = [-1 if v is None else index.setdefault(v, len(index)) for v in values]
    width = np.int8 if len(index) < 127 else np.int16 if len(index) < 32767 else np.int32
    return np.array(codes, dtype=width), pd.CategoricalDtype(pd.Index(list(index), dtype=_TEXT))


def _categorical(per_shape: list[Any], shape: np.ndarray) -> pd.Categorical:
    """Per-shape values → a categorical column through a small code lookup table."""
    lut, dtype = _categories(per_shape)
    return pd.Categorical.from_codes(lut[shape], dtype=dtype)


def _fixed_categorical(codes: np.ndarray, name: str) -> pd.Categorical:
    categories = pd.Index(_FIXED_CATEGORIES[name], dtype=_TEXT)
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def _nullable_int(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(values.astype(np.int64, copy=False), missing)


def _per_shape_int(per_shape: list[int | None], shape: np.ndarray) -> pd.arrays.IntegerArray:
    values = np.array([0 if v is None else v for v in per_shape], dtype=np.int64)
    missing = np.array([v is None for v in per_shape], dtype=bool)
    return _nullable_int(values[shape], missing[shape])


def _objects(values: Iterable[Any], n: int) -> np.ndarray:
    """An object column straight from an iterable (no per-element shape discovery)."""
    return np.fromiter(values, dtype=object, count=n)


def _lookup(table: list[Any]) -> np.ndarray:
    """A small object array of ``table`` (its items stay whole, even tuples and lists)."""
    out = np.empty(len(table), dtype=object)
    for i, item in enumerate(table):
        out[i] = item
    return out


def _shared(values: Iterable[Any], key: Callable[[Any], Any], make: Callable[[Any], Any]) -> np.ndarray:
    """``make(value)`` per value as a lookup table, one object for values with equal ``key``."""
    made: dict[Any, Any] = {}
    return _lookup([made[k] if (k := key(v)) in made else made.setdefault(k, make(v)) for v in values])


def _distinct(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
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


def _one_sided(side: str, values: list[int]) -> list[dict[str, int]]:
    """``{side: value}`` for each value, one dict per distinct value."""
    made = {value: {side: value} for value in dict.fromkeys(values)}
    return [made[value] for value in values]


def _units_column(
    anthropic: np.ndarray, inp: np.ndarray, out: np.ndarray, read: np.ndarray, write: np.ndarray, reasoning: np.ndarray
) -> np.ndarray:
    """``_compact_units`` for every row, one map object per distinct map.

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
    codes, firsts = _distinct((layout, *parts))
    layout = layout[firsts]
    text_in, text_out, first, second = (part[firsts] for part in parts)
    kinds = layout * 4 + (first != 0) * 2 + (second != 0)
    maps = np.empty(len(firsts), dtype=object)
    for kind in np.flatnonzero(np.bincount(kinds, minlength=12)).tolist():
        at = np.flatnonzero(kinds == kind)
        text, first_key, first_side, second_key, second_side = _LAYOUTS[kind >> 2]
        a, b, c, d = _shared_ints(text_in[at], text_out[at], first[at], second[at])
        if kind & 3 == 0:
            made = [{text: {"input": x, "output": y}} for x, y in zip(a, b)]
        elif kind & 3 == 2:
            ones = _one_sided(first_side, c)
            made = [{text: {"input": x, "output": y}, first_key: z} for x, y, z in zip(a, b, ones)]
        elif kind & 3 == 1:
            ones = _one_sided(second_side, d)
            made = [{text: {"input": x, "output": y}, second_key: w} for x, y, w in zip(a, b, ones)]
        else:
            made = [
                {text: {"input": x, "output": y}, first_key: z, second_key: w}
                for x, y, z, w in zip(a, b, _one_sided(first_side, c), _one_sided(second_side, d))
            ]
        maps[at] = _objects(made, len(at))
    return maps[codes]


class _Columns:
    """One snapshot's columns, each built on request; what several of them read is made once."""

    def __init__(self, s: _Snapshot) -> None:
        self.s = s
        self.f = s.fields
        # shape tuple: mode, provider, category, resource, operation, streaming, cell_id,
        # execution_count, provider_uri, worker, deployment, context
        self.contexts = [t[len(_SHAPE_TYPES)] for t in s.shapes]

    @cached_property
    def shape(self) -> np.ndarray:
        return self.f["shape"]

    @cached_property
    def has_payi(self) -> np.ndarray:
        return ~np.isnan(self.f["payi"])

    def per_shape(self, name: str) -> list[Any]:
        if name in _SHAPE_POSITIONS:
            position = _SHAPE_POSITIONS[name]
            return [t[position] for t in self.s.shapes]
        return [getattr(c, name) for c in self.contexts]

    def build(self, name: str) -> Any:
        """The column ``name`` as ``df`` holds it."""
        f = self.f
        if name in _RECORD_COLUMNS:
            return f[_RECORD_COLUMNS[name]]
        if name in _COLUMN_HEAPS:
            heap = _COLUMN_HEAPS[name]
            return _heap_column(self.s.heaps[heap], f[heap])
        if name in _CATEGORY_COLUMNS and name not in _FIXED_CATEGORIES:
            return _categorical(self.per_shape(name), self.shape)
        if name in ("execution_count", "use_case_version"):
            return _per_shape_int(self.per_shape(name), self.shape)
        return getattr(self, name)()

    def event_id(self) -> Any:
        return _event_ids(self.f["id"], self.s.odd_ids)

    def timestamp(self) -> pd.DatetimeIndex:
        micros = self.f["timestamp"] * 1e6
        return pd.DatetimeIndex(np.rint(micros, out=micros).astype("datetime64[us]")).tz_localize("UTC")

    def streaming(self) -> np.ndarray:
        return np.array(self.per_shape("streaming"), dtype=bool)[self.shape]

    def units(self) -> np.ndarray:
        f = self.f
        anthropic = np.array([p in _ANTHROPIC_LAYOUT for p in self.per_shape("provider")], dtype=bool)[self.shape]
        tokens = (f[name] for name in ("input", "output", "cache_read", "cache_write", "reasoning"))
        column = _units_column(anthropic, *tokens)
        column[np.flatnonzero(f["flags"] & _NO_UNITS)] = _lookup([{}])  # one shared {} for rows without units
        for i, own in self.s.units.items():
            column[i] = {name: dict(sides) for name, sides in own.items()}
        return column

    def cost_usd(self) -> np.ndarray:
        return np.where(self.has_payi, self.f["payi"], self.f["est"])

    def cost_source(self) -> pd.Categorical:
        codes = np.ones(self.s.n, dtype=np.int8)  # COST_SOURCES: payi, estimate, unknown
        codes[np.isnan(self.f["est"])] = 2
        codes[self.has_payi] = 0
        return _fixed_categorical(codes, "cost_source")

    def http_status(self) -> pd.arrays.IntegerArray:
        http = self.f["http"]
        return _nullable_int(http, http < 0)

    def limit_ids(self) -> np.ndarray:
        return _shared(self.per_shape("limit_ids"), tuple, list)[self.shape]

    def properties(self) -> np.ndarray:
        return _shared(self.per_shape("properties"), lambda p: tuple(p.items()), dict)[self.shape]

    def limit_states(self) -> np.ndarray:
        return _lookup([dict(items) for items in self.s.limit_table] + [{}])[self.f["limits"]]  # -1: the last, {}

    def status(self) -> pd.Categorical:
        return _fixed_categorical(self.f["status"], "status")

    def error(self) -> Any:
        entries = np.full(self.s.n, -1, dtype=np.int64)
        entries[list(self.s.errors)] = np.arange(len(self.s.errors))
        return _taken(pa.array(list(self.s.errors.values()), type=pa.large_string()), entries)

    def partial(self) -> np.ndarray:
        return (self.f["flags"] & _PARTIAL).astype(bool)

    def input_tokens_estimated(self) -> np.ndarray:
        return (self.f["flags"] & _ESTIMATED).astype(bool)

    def limit_id(self) -> tuple[np.ndarray, pd.Categorical]:
        """``limit_ids`` exploded: the row of each (row, limit id) pair and the limit ids.

        Worked out per shape (a few) and spread over rows with numpy: a shape's ids sit at
        ``starts[shape]`` in one flat code table, a shape without ids has one null entry.
        """
        per_shape = [ids or (None,) for ids in self.per_shape("limit_ids")]
        flat, dtype = _categories(limit_id for ids in per_shape for limit_id in ids)
        sizes = np.array([len(ids) for ids in per_shape], dtype=np.intp)
        starts = np.cumsum(sizes) - sizes
        counts = sizes[self.shape]
        rows = np.repeat(np.arange(self.s.n), counts)
        firsts = np.cumsum(counts) - counts  # each row's first exploded position
        positions = np.arange(len(rows)) - np.repeat(firsts, counts)
        codes = flat[np.repeat(starts[self.shape], counts) + positions]
        return rows, pd.Categorical.from_codes(codes, dtype=dtype)


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
        frame["limit_ids"] = _objects(map(list, frame["limit_ids"]), len(frame))
    return _conform_categories(frame)


def _conform_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """Text categories everywhere (an empty column reads back as object); fixed sets in full."""
    for name in _CATEGORY_COLUMNS:
        if name in frame:
            fixed = _FIXED_CATEGORIES.get(name)
            categories = frame[name].cat.categories if fixed is None else fixed
            frame[name] = frame[name].cat.set_categories(pd.Index(categories, dtype=_TEXT))
    return frame


def read_csv(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a ledger frame written with ``DataFrame.to_csv(path, index=False)`` (or ``Ledger.to_csv``).

    Nested columns come back from their Python-literal text, and every known column gets the
    ledger's dtype again (category dtypes list the categories present, in sorted order).
    """
    frame = pd.read_csv(path)
    for name in frame.columns:
        if name in NESTED_COLUMNS:
            frame[name] = _objects((None if pd.isna(v) else ast.literal_eval(v) for v in frame[name]), len(frame))
        elif name == "timestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        elif name in _CATEGORY_COLUMNS:
            frame[name] = frame[name].astype(_TEXT).astype("category")
        elif name in _TEXT_COLUMNS:
            frame[name] = frame[name].astype(_TEXT)
        elif name in _NULLABLE_INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        elif name in _INT_COLUMNS:
            frame[name] = frame[name].astype(np.int64)
        elif name in _FLOAT_COLUMNS:
            frame[name] = frame[name].astype(np.float64)
        elif name in _BOOL_COLUMNS:
            frame[name] = frame[name].astype(bool)
    return _conform_categories(frame)
