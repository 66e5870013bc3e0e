"""``Ledger``: one row per captured provider call, thread-safe, with a cached pandas view.

This class owns the concurrency and the lifecycle (locks, ``RowRef`` generations, rows
reserved now and built later, subscribers, cached frames); what a row stores is
``records``/``store``, how a frame is built is ``build``/``chunks``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from ..events import UsageEvent
from .chunks import Pieces, build_frame
from .io import to_parquet
from .records import encode, failed_row, prepare_changes
from .schema import COLUMNS, LIMIT_ID, RECORD_DTYPE, RowRef, Totals, requested
from .store import Store
from .totals import summarize
from .views import apply_views, new_uid

log = logging.getLogger("payi_notebook.ledger")
_new_tuple = tuple.__new__
_CACHED_FRAMES = 8  # column lists kept per version (the widgets ask for a few)


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


class Ledger:
    """Every captured call as one row; thread-safe appends and updates, a cached DataFrame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._subscribers: tuple[_Subscription, ...] = ()
        self._generation = 0
        self._version = 0
        self._frames: dict[tuple[str, ...], tuple[int, pd.DataFrame]] = {}  # by column list: (version, frame)
        self._uid = new_uid()
        self._filling = threading.Lock()  # one materialize() at a time keeps rows in reservation order
        self._clear()

    def _clear(self) -> None:
        """Fresh, empty storage (new containers, so a reset gives the memory back)."""
        self._store = Store()
        self._pieces = Pieces()
        self._reserved = 0  # rows handed out: filled (``_store.n``) plus those waiting in ``_pending``
        self._pending: deque[tuple[RowRef, Callable[[], UsageEvent]]] = deque()

    def _notify(self) -> None:
        for subscription in self._subscribers:
            subscription.run()

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
            return self._add(failed_row(f"this call's row could not be stored: {exc}", event), None)

    def append_later(self, make: Callable[[], UsageEvent]) -> RowRef:
        """Reserve the next row now; ``make()`` builds its event when the row is first needed.

        Capture's hot path only reserves. Rows are filled in reservation order by
        ``materialize()``, which every read and update runs first and the flusher runs in the
        background. ``make`` should not raise; if it does, the row records the failure.
        """
        with self._lock:
            ref = self._queue(make)
        self._notify()
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
                    self._add(failed_row(f"capture failed: {exc!r}"), ref)

    def _add(self, event: UsageEvent, reserved: RowRef | None) -> RowRef:
        """Append ``event``: as a fresh row (None), or into the row ``reserved`` for it."""
        encoded = encode(event)
        with self._lock:
            store = self._store
            if reserved is None:
                if self._reserved != store.n:  # earlier rows are still being filled: keep the order
                    return self._queue(lambda: event)
            elif reserved.generation != self._generation:
                return reserved  # a reset dropped this row while it was being built
            n = store.add(encoded)
            if reserved is None:
                self._reserved = n + 1
            self._version += 1
            generation = self._generation
        self._notify()
        return _new_tuple(RowRef, (generation, n))

    def update(self, ref: RowRef, **changes: Any) -> bool:
        """Change fields of one row; False (and nothing changed) if ``ref`` predates a reset.

        Updatable: ``UPDATABLE``; any other name raises TypeError. ``xproxy_result`` also sets
        ``payi_request_id`` and ``limit_states`` from its ``request_id`` and ``limits`` unless
        those are passed too. None means "unknown" for costs and ``http_status`` and clears
        ``limit_states``/``error``.
        """
        values = prepare_changes(changes)
        generation, index = ref
        if index >= self._store.n:
            self.materialize()
        with self._lock:
            if generation != self._generation or not 0 <= index < self._store.n:
                return False
            if not values:
                return True
            self._store.set(index, values)
            self._version += 1
        self._notify()
        return True

    def reset(self) -> None:
        """Drop every row; refs handed out before become stale."""
        with self._lock:
            stale, self._frames = (self._frames, self._store, self._pieces), {}
            self._clear()
            self._generation += 1
            self._version += 1
        del stale  # a big frame is freed outside the lock
        self._notify()

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
            if generation != self._generation or not 0 <= index < self._store.n:
                return None
            encoded = self._store.xproxy(index)
        return None if encoded is None else json.loads(encoded)

    def totals(self, refs: Iterable[RowRef]) -> Totals:
        """Summary of the given rows; stale and repeated refs are ignored."""
        self.materialize()
        with self._lock:
            store, generation = self._store, self._generation
            rows = sorted({index for gen, index in refs if gen == generation and 0 <= index < store.n})
            records = np.frombuffer(store.records, dtype=RECORD_DTYPE)[rows]  # fancy indexing copies
            errors = sum(i in store.errors for i in rows)
            limit_table, shapes = store.limits.keys[:], store.shapes[:]
        return summarize(records, errors, limit_table, shapes)

    @property
    def df(self) -> pd.DataFrame:
        """All rows as a DataFrame (``COLUMNS``); its index is each row's ``RowRef.index``.

        Built on first access after a change, then cached; a stale frame (and its memory) is
        let go by the next build or ``reset``, never on the append path. Rows are built in
        chunks, and a chunk none of whose rows changed is not built again (see ``chunks``),
        so reading ``df`` after each call stays cheap. Each access returns a shallow
        copy-on-write copy of the cached frame: a new object sharing the data, so setting
        values or adding columns never reaches the cache. ``xproxy_json`` is each row's
        ``xproxy_result`` as compact JSON text (``Ledger.xproxy_result(ref)`` parses it).

        The dicts and lists in ``units``, ``properties``, ``limit_ids`` and ``limit_states``
        are read-only by convention: a chunk's build makes a single object for rows whose
        value is equal (every row of a cell run shares its ``properties`` and ``limit_ids``,
        rows without units share one ``{}``), and copies of the frame share them too. Copy
        one (``dict(row["properties"])``) before changing it; the ledger itself never sees
        the change, and the chunk's next build makes fresh objects.
        """
        self.materialize()
        version, cached = self._cached(COLUMNS)
        frame = cached.copy(deep=False)  # copy-on-write: shares data until either side writes
        return apply_views(frame, (self._uid, self._generation, version))

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
        names = requested(columns)
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
            with self._lock:
                store, pieces = self._store, self._pieces
            cached = build_frame(store, pieces, self._lock, lambda: self._version, names)
            if len(frames) >= _CACHED_FRAMES:  # the oldest partial frame goes, never df (the costly one)
                del frames[next(key for key in frames if key != COLUMNS)]
            frames[names] = cached
        return cached

    def to_parquet(self, path: str | PathLike[str]) -> None:
        """Write ``df`` to Parquet so that ``read_parquet`` gives it back (see ``io.to_parquet``)."""
        to_parquet(self.df, path)

    def to_csv(self, path: str | PathLike[str]) -> None:
        """Write ``df`` to CSV so that ``read_csv`` gives it back."""
        self.df.to_csv(path, index=False)
