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

``df`` builds from a snapshot copied under the lock (appends wait for that memcpy only, not
for the build) and is cached until the next change.
"""

from __future__ import annotations

import ast
import gc
import json
import logging
import math
import struct
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
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
    "use_case_version",
    "provider_uri",
    "xproxy_json",
)
"""Every column of ``Ledger.df``, in order: the DESIGN.md contract, then the extras."""

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
)
_FIXED_CATEGORIES = {"status": STATUSES, "cost_source": COST_SOURCES}
_INT_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_NULLABLE_INT_COLUMNS = ("execution_count", "http_status", "use_case_version")
_FLOAT_COLUMNS = ("est_cost_usd", "payi_cost_usd", "cost_usd", "latency_ms", "ttft_ms")
_BOOL_COLUMNS = ("streaming", "partial")

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
    ("flags", "B"),  # _PARTIAL | _NO_UNITS
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
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint16)  # octet -> its 2 hex digits
_PARTIAL = 1
_NO_UNITS = 2
_new_tuple = tuple.__new__

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
    row that reported one; ``errors`` counts rows with an error message.
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


_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _xproxy_fields(result: Any) -> tuple[bytes, bytes | None, tuple[tuple[str, str], ...] | None]:
    """An ``xproxy_result`` as UTF-8 JSON, with the Pay-i request id and limit states it carries."""
    if not isinstance(result, Mapping):
        raise TypeError(f"xproxy_result must be a dict, got {type(result).__name__}")
    try:
        encoded = _to_json(result).encode()
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
)
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


class Ledger:
    """Every captured call as one row; thread-safe appends and updates, a cached DataFrame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._subscribers: tuple[_Subscription, ...] = ()
        self._generation = 0
        self._version = 0
        self._cache: tuple[int, pd.DataFrame] | None = None
        self._clear()

    def _clear(self) -> None:
        """Fresh, empty storage (new containers, so a reset gives the memory back)."""
        self._n = 0
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
        """Add one call as a row; O(1), thread-safe. A malformed event raises and adds nothing.

        ``payi_request_id`` and ``limit_states`` start from ``event.xproxy_result`` when
        capture already has one (proxy mode).
        """
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
                id(ctx),
            )
            status = _STATUS_CODES[event.status]
            inp, out, read, write, reasoning = event.tokens
            units = event.units
            flags = _PARTIAL if event.partial else 0
            own_units = None
            if not units:
                flags |= _NO_UNITS
            elif units != _compact_units(provider == "anthropic", inp, out, read, write, reasoning):
                own_units = {name: dict(sides) for name, sides in units.items()}
            event_id = event.event_id
            raw = None
            if type(event_id) is str and len(event_id) == 32 and event_id.islower():
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
            heap = {"request": self._requests, "response": self._responses, "xproxy": self._xproxies}[column]
            _SETTERS[column](self._records, at + _OFFSETS[column], -1 if value is None else heap.add(value))
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
            stale, self._cache = self._cache, None
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
        return self._n

    def __repr__(self) -> str:
        return f"<Ledger rows={self._n} generation={self._generation} version={self._version}>"

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
        with self._lock:
            generation, n = self._generation, self._n
            rows = sorted({index for gen, index in refs if gen == generation and 0 <= index < n})
            records = np.frombuffer(self._records, dtype=_RECORD_DTYPE)[rows]  # fancy indexing copies
            errors = sum(i in self._errors for i in rows)
            limit_table = self._limit_table[:]
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
        )

    @property
    def df(self) -> pd.DataFrame:
        """All rows as a DataFrame (``COLUMNS``); its index is each row's ``RowRef.index``.

        Built on first access after a change, then cached; a stale frame (and its memory) is
        let go by the next build or ``reset``, never on the append path. Each access returns a shallow copy-on-write
        copy of the cached frame: a new object sharing the data, so setting values or adding
        columns never reaches the cache. Dicts and lists in the nested columns are made fresh
        by each build and shared by the copies of that build: copy one before changing it in
        place. ``xproxy_json`` is each row's ``xproxy_result`` as compact JSON text
        (``Ledger.xproxy_result(ref)`` gives it parsed).
        """
        cached = self._cache
        if cached is None or cached[0] != self._version:
            with self._build_lock:
                cached = self._cache
                if cached is None or cached[0] != self._version:
                    self._cache = cached = None  # drop the stale frame first: the build reuses its memory
                    snapshot = self._snapshot()
                    cached = self._cache = (snapshot.version, _build(snapshot))
        return cached[1].copy(deep=False)  # copy-on-write: shares data until either side writes

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            return _Snapshot(
                version=self._version,
                records=bytes(self._records),
                responses=self._responses.snapshot(),
                requests=self._requests.snapshot(),
                xproxies=self._xproxies.snapshot(),
                odd_ids=dict(self._odd_ids),
                units=dict(self._units),
                errors=dict(self._errors),
                shapes=self._shapes[:],
                limit_table=self._limit_table[:],
            )

    def to_parquet(self, path: str | PathLike[str]) -> None:
        """Write ``df`` to Parquet so that ``read_parquet`` gives it back (see ``to_parquet``)."""
        to_parquet(self.df, path)

    def to_csv(self, path: str | PathLike[str]) -> None:
        """Write ``df`` to CSV so that ``read_csv`` gives it back."""
        self.df.to_csv(path, index=False)


@dataclass(slots=True)
class _Snapshot:
    version: int
    records: bytes
    responses: tuple[bytes, bytes]
    requests: tuple[bytes, bytes]
    xproxies: tuple[bytes, bytes]
    odd_ids: dict[int, str]
    units: dict[int, Units]
    errors: dict[int, str]
    shapes: list[tuple[Any, ...]]
    limit_table: list[tuple[tuple[str, str], ...]]


def _build(s: _Snapshot) -> pd.DataFrame:
    """The frame for a snapshot, with the cyclic GC paused.

    A build makes millions of small acyclic containers (units dicts, id lists); left on, the
    collector rescans them over and over and triples the build time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _frame(s)
    finally:
        if enabled:
            gc.enable()


def _text(values: Any) -> Any:
    return pd.array(values, dtype=_TEXT)


def _heap_column(heap: tuple[bytes, bytes], entries: np.ndarray) -> Any:
    """Row strings from a heap snapshot: one Arrow array over it, taken in row order (-1: null)."""
    data, ends = heap
    count = len(ends) // 8 - 1
    pool = pa.LargeStringArray.from_buffers(count, pa.py_buffer(ends), pa.py_buffer(data))
    if count == len(entries) and np.array_equal(entries, np.arange(count)):
        return _text(pool)  # one entry per row, in order: no copy
    return _text(pool.take(pa.array(entries, mask=entries < 0, type=pa.int64())))


def _event_ids(raw: np.ndarray, odd: dict[int, str]) -> Any:
    """Event ids rendered from their 16 raw bytes (through Arrow: no Python string per row)."""
    n = len(raw)
    digits = _HEX_PAIRS[raw.view(np.uint8)]  # 32 hex digits per row, back to back
    if not odd:
        offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int64)
        return _text(pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits)))
    rendered = [b.decode("ascii") for b in digits.view("S32").tolist()]
    for i, event_id in odd.items():
        rendered[i] = event_id
    return _text(pa.array(rendered, type=pa.large_string()))


def _categorical(per_shape: list[Any], codes: np.ndarray) -> pd.Categorical:
    """Per-shape values → a categorical column through a small code lookup table."""
    index: dict[Any, int] = {}
    lut = np.array([-1 if v is None else index.setdefault(v, len(index)) for v in per_shape], dtype=np.int32)
    return pd.Categorical.from_codes(lut[codes], dtype=pd.CategoricalDtype(pd.Index(list(index), dtype=_TEXT)))


def _fixed_categorical(codes: np.ndarray, name: str) -> pd.Categorical:
    categories = pd.Index(_FIXED_CATEGORIES[name], dtype=_TEXT)
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def _nullable_int(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(values.astype(np.int64), missing)


def _per_shape_int(per_shape: list[int | None], codes: np.ndarray) -> pd.arrays.IntegerArray:
    values = np.array([0 if v is None else v for v in per_shape], dtype=np.int64)
    missing = np.array([v is None for v in per_shape], dtype=bool)
    return _nullable_int(values[codes], missing[codes])


def _objects(values: Iterable[Any], n: int) -> np.ndarray:
    """An object column straight from an iterable (no per-element shape discovery)."""
    return np.fromiter(values, dtype=object, count=n)


def _lookup(table: list[Any]) -> np.ndarray:
    """A small object array of ``table`` (its items stay whole, even tuples and lists)."""
    out = np.empty(len(table), dtype=object)
    for i, item in enumerate(table):
        out[i] = item
    return out


def _units_column(
    anthropic: np.ndarray, inp: np.ndarray, out: np.ndarray, read: np.ndarray, write: np.ndarray, reasoning: np.ndarray
) -> np.ndarray:
    """``_compact_units`` for every row, its arithmetic done by numpy."""
    layout = np.where(anthropic, 1 + (inp >= ANTHROPIC_LARGE_CONTEXT_TOKENS), 0)
    parts = (
        np.where(anthropic, inp - read - write, inp - read),
        np.where(anthropic, out, out - reasoning),
        np.where(anthropic, write, read),
        np.where(anthropic, read, reasoning),
    )
    return _objects(map(_units_map, layout.tolist(), *(part.tolist() for part in parts)), len(inp))


def _frame(s: _Snapshot) -> pd.DataFrame:
    r = np.frombuffer(s.records, dtype=_RECORD_DTYPE)
    n = len(r)
    shapes = s.shapes
    # shape tuple: mode, provider, category, resource, operation, streaming, cell_id, execution_count,
    # provider_uri, context
    contexts = [t[9] for t in shapes]
    shape = np.ascontiguousarray(r["shape"])

    def per_shape(i: int) -> list[Any]:
        return [t[i] for t in shapes]

    def from_context(name: str) -> list[Any]:
        return [getattr(c, name) for c in contexts]

    tokens = [np.ascontiguousarray(r[name]) for name in ("input", "output", "cache_read", "cache_write", "reasoning")]
    anthropic = np.array([p == "anthropic" for p in per_shape(1)], dtype=bool)[shape]
    units = _units_column(anthropic, *tokens)
    for i in np.flatnonzero(r["flags"] & _NO_UNITS).tolist():
        units[i] = {}
    for i, own in s.units.items():
        units[i] = {name: dict(sides) for name, sides in own.items()}
    errors: list[str | None] = [None] * n
    for i, error in s.errors.items():
        errors[i] = error
    limit_ids = _lookup(from_context("limit_ids"))[shape]
    properties = _lookup([dict(p) for p in from_context("properties")])[shape]
    states = _lookup([dict(items) for items in s.limit_table] + [{}])[r["limits"]]  # code -1: the last, {}
    payi, est = np.ascontiguousarray(r["payi"]), np.ascontiguousarray(r["est"])
    has_payi = ~np.isnan(payi)
    http = r["http"]
    columns: dict[str, Any] = {
        "event_id": _event_ids(np.ascontiguousarray(r["id"]), s.odd_ids),
        "execution_count": _per_shape_int(per_shape(7), shape),
        "cell_id": _categorical(per_shape(6), shape),
        "timestamp": pd.DatetimeIndex(np.round(r["timestamp"] * 1e6).astype("datetime64[us]")).tz_localize("UTC"),
        "mode": _categorical(per_shape(0), shape),
        "provider": _categorical(per_shape(1), shape),
        "category": _categorical(per_shape(2), shape),
        "resource": _categorical(per_shape(3), shape),
        "provider_response_id": _heap_column(s.responses, r["response"].astype(np.int64)),
        "operation": _categorical(per_shape(4), shape),
        "streaming": np.array(per_shape(5), dtype=bool)[shape],
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cache_read_tokens": tokens[2],
        "cache_write_tokens": tokens[3],
        "reasoning_tokens": tokens[4],
        "units": units,
        "est_cost_usd": est,
        "payi_cost_usd": payi,
        "cost_usd": np.where(has_payi, payi, est),
        "cost_source": _fixed_categorical(np.where(has_payi, 0, np.where(np.isnan(est), 2, 1)), "cost_source"),
        "latency_ms": np.ascontiguousarray(r["latency"]),
        "ttft_ms": np.ascontiguousarray(r["ttft"]),
        "http_status": _nullable_int(http, http < 0),
        "use_case_name": _categorical(from_context("use_case_name"), shape),
        "use_case_id": _categorical(from_context("use_case_id"), shape),
        "use_case_step": _categorical(from_context("use_case_step"), shape),
        "user_id": _categorical(from_context("user_id"), shape),
        "account_name": _categorical(from_context("account_name"), shape),
        "limit_ids": _objects(map(list, limit_ids), n),
        "properties": _objects(map(dict.copy, properties), n),
        "payi_request_id": _heap_column(s.requests, r["request"].astype(np.int64)),
        "limit_states": _objects(map(dict.copy, states), n),
        "status": _fixed_categorical(r["status"], "status"),
        "error": _text(pa.array(errors, type=pa.large_string())),
        "partial": (r["flags"] & _PARTIAL).astype(bool),
        "use_case_version": _per_shape_int(from_context("use_case_version"), shape),
        "provider_uri": _categorical(per_shape(8), shape),
        "xproxy_json": _heap_column(s.xproxies, r["xproxy"].astype(np.int64)),
    }
    return pd.DataFrame(columns, copy=False)


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
