"""Background sender: prices every captured event and delivers telemetry events to Pay-i.

``submit()`` is the only part on the request path: it renders the ingest body, journals it
to the spool (``spool.py``) and enqueues it, and never raises. Everything else runs on one
daemon thread with its own asyncio loop (never the kernel's loop):

- **pricing**: ``est_cost_usd`` for every submitted event (telemetry and proxied), so
  genai-prices lookups stay off the request path; ``wait_priced()`` lets a badge wait;
- **sending**: ``POST /ingest`` with the context as ``xProxy-*`` headers, at most
  ``concurrency`` at once; each answer's ``xproxy_result`` (Pay-i cost, request id, limit
  states) goes onto the event's ledger row. A ``duplicate_request`` answer counts as sent;
- **bulk under backlog**: with ``bulk_threshold`` or more events waiting, batches of up to
  ``bulk_size`` go to ``/ingest/bulk``. Bulk answers carry no per-item result, so those rows
  become ``sent`` at once and get Pay-i's cost later from ``GET /requests/provider/{category}/
  {provider_response_id}/result``, looked up only when nothing is waiting to be sent (a few
  tries; a row whose lookup never succeeds keeps only its local estimate). A batch refused as
  a whole is re-sent item by item, so one bad event cannot fail its neighbours;
- **yielding to the caller**: while calls complete back to back (events arriving within
  ``_QUIET`` of each other) the thread waits, up to ``_MAX_DEFER``, before pricing and
  sending: its work holds the GIL and would otherwise stall the caller's next call. The
  backlog it then finds goes out in bulk, and cost lookups wait for a real pause.
  ``flush()``/``wait_priced()`` never wait;
- **retries**: connection errors, timeouts, 408, 429 and 5xx pause all sending — for the
  ``Retry-After`` Pay-i gave, else for an exponential backoff with full jitter (both capped
  at ``backoff_max``) — then probe with one request at a time until Pay-i answers. No retry cap: events
  stay ``pending`` (and in the spool) through an outage; ``status()`` shows the error. A
  rejected key (401/403) is treated the same way, since it says nothing about the event.
  Every retry reuses the event's ``provider_response_id``, so Pay-i de-duplicates. Any other
  refusal marks the row ``failed`` with Pay-i's message;
- **undefined use cases**: a Pay-i that requires use case definitions answers
  ``use_case_not_found``; with ``create_use_cases`` the flusher defines each such use case
  once and sends its events again, else the rows fail saying how to define it.

At interpreter exit the queue gets ``exit_timeout`` seconds to drain; what is left stays in
the spool and is sent by the next flusher for the same endpoint.

The journal never fails a call: with no journal dir, or a disk too full for the spool, the
event is kept in memory and still sent; this thread journals it once the spool has room
again. ``journal_status()`` says how it stands (size, oldest pending event, degraded
durability, quarantined lines, other endpoints' journals; see ``journal.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import heapq
import itertools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from . import wire, xproxy
from .client import AsyncPayiClient, PayiError, check_endpoint
from .config import Settings
from .events import UsageEvent
from .journal import LARGE_BYTES, JournalStatus, others, write_info
from .pricing import price_units
from .secret import Secret
from .spool import Spool, SpoolRecord, endpoint_dir, endpoint_key_for

log = logging.getLogger(__name__)

_HOLD_STATUS = frozenset({401, 403})  # the key, not the event, is refused: keep events and retry
_FOLLOWUP_ATTEMPTS = 6
_TICK = 0.05  # while draining, new events are picked up at least this often without a wake-up
_QUIET = 0.1  # the foreground counts as busy while events arrived within this many seconds
_MAX_DEFER = 1.0  # ... but no event waits longer than this for the foreground to pause
_SLICE = 4  # events built and priced between two polls of the loop (each poll releases the GIL)
USE_CASE_NOT_FOUND = "use_case_not_found"


class LedgerLike(Protocol):
    def update(self, ref: Any, **changes: Any) -> bool: ...

    def materialize(self) -> None: ...


@dataclass(eq=False, slots=True)
class _Job:
    event_id: str
    ref: Any
    event: UsageEvent | None  # None for events recovered from a spool
    body: dict[str, Any] | None  # None: price only, do not send
    headers: dict[str, str]
    generated_id: bool = False
    journalled: bool = False
    call: Any = None  # a deferred captured call: its event (and body, with send) are built on this thread
    send: bool = True
    single: bool = False  # a bulk batch holding it was refused as a whole: send it alone
    lookups: int = 0
    born: float = 0.0  # wall-clock time of the call (the age of the oldest pending event)
    use_case_retried: bool = False  # sent again after its use case was defined (only once)


@dataclass(frozen=True, repr=False)
class FlushReport:
    """What ``flush()`` saw: counts since the previous ``flush()`` and what is still open.

    ``sent`` counts telemetry events delivered; proxied calls are ``proxied`` (never sent twice).
    """

    sent: int
    failed: int
    pending: int
    in_flight: int
    awaiting_cost: int
    timed_out: bool
    elapsed_s: float
    errors: tuple[str, ...] = ()
    remote_sent: int = 0  # of ``sent``, how many other processes (Dask workers) delivered
    remote_processes: int = 0
    proxied: int = 0  # through the Pay-i proxy: Pay-i recorded them in flight

    def combined(self, other: FlushReport) -> FlushReport:
        """This report and another process's (its counts become ours, marked remote)."""
        return replace(
            self,
            sent=self.sent + other.sent,
            failed=self.failed + other.failed,
            pending=self.pending + other.pending,
            in_flight=self.in_flight + other.in_flight,
            awaiting_cost=self.awaiting_cost + other.awaiting_cost,
            timed_out=self.timed_out or other.timed_out,
            errors=self.errors + other.errors,
            remote_sent=self.remote_sent + other.sent,
            remote_processes=self.remote_processes + other.remote_processes,
            proxied=self.proxied + other.proxied,
        )

    def __str__(self) -> str:
        text = f"Pay-i: {self.sent} sent"
        if self.remote_processes:
            plural = "s" if self.remote_processes != 1 else ""
            text += f" ({self.remote_sent} by {self.remote_processes} Dask worker{plural})"
        if self.proxied:
            text += f", {self.proxied} proxied (recorded by Pay-i in flight)"
        text += f", {self.failed} failed"
        if self.pending or self.in_flight:
            text += f", {self.pending + self.in_flight} still pending"
        if self.timed_out:
            text += " (timed out; they stay queued and in the spool)"
        return text

    __repr__ = __str__


@dataclass(frozen=True, repr=False)
class FlusherStatus:
    """A snapshot of the flusher for ``%payi status``."""

    endpoint: str
    running: bool
    pending: int
    in_flight: int
    sent: int
    failed: int
    retries: int
    recovered: int
    awaiting_cost: int
    unknown_models: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    retry_in_s: float = 0.0
    spool_path: str | None = None
    note: str | None = None
    journal: JournalStatus | None = None

    def __str__(self) -> str:
        state = "running" if self.running else "stopped"
        text = (
            f"flusher {state} → {self.endpoint}: {self.sent} sent, {self.failed} failed, "
            f"{self.pending} pending, {self.in_flight} in flight, {self.retries} retries"
        )
        if self.recovered:
            text += f", {self.recovered} recovered from spool"
        if self.retry_in_s > 0:
            text += f"; next attempt in {self.retry_in_s:.1f} s"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        if self.note:
            text += f"; {self.note}"
        return text

    __repr__ = __str__


class Flusher:
    """Prices and delivers events in the background. See the module docstring for the rules."""

    def __init__(
        self,
        ledger: LedgerLike | None,
        *,
        base_url: str,
        api_key: str,
        spool_dir: str | None = None,
        endpoint_key: str | None = None,
        concurrency: int = 8,
        bulk_threshold: int = 50,
        bulk_size: int = 100,
        settings: Settings | None = None,
        log_prompt_and_response: bool = True,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        lookup_delay: float = 0.2,
        timeout: float = 30.0,
        exit_timeout: float = 3.0,
        compact_bytes: int | None = None,
        rebuild: Callable[[str, dict[str, Any]], UsageEvent] | None = None,
        journal_cap: int = LARGE_BYTES,
        create_use_cases: bool = True,
        adopt: bool = True,
    ) -> None:
        if concurrency < 1 or bulk_size < 1 or bulk_threshold < 1:
            raise ValueError("concurrency, bulk_size and bulk_threshold must be at least 1")
        if backoff_base <= 0 or backoff_max < backoff_base:
            raise ValueError("backoff_base must be > 0 and backoff_max >= backoff_base")
        check_endpoint(base_url, api_key)
        self.ledger = ledger
        self.on_update: Callable[[str, dict[str, Any]], None] | None = None  # sees every row change by event id
        self.endpoint = base_url.rstrip("/")
        self._key = Secret(api_key)
        self._timeout = timeout
        self._client: AsyncPayiClient | None = None
        self.endpoint_key = endpoint_key or endpoint_key_for(base_url)
        self.spool_dir = endpoint_dir(spool_dir, self.endpoint_key)
        self.concurrency = concurrency
        self.bulk_threshold = bulk_threshold
        self.bulk_size = bulk_size
        # The owner of log_prompt_and_response and exit_timeout: the session's settings (read
        # at each use, so pn.configure applies at once), or this flusher's own when standalone.
        self.settings = settings or Settings(log_prompt_and_response=log_prompt_and_response, exit_timeout=exit_timeout)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.lookup_delay = lookup_delay
        self._compact_bytes = compact_bytes
        self._rebuild = rebuild or _rebuild_call  # raw captured calls recovered from a spool → events
        self.journal_cap = journal_cap  # past this many bytes of journal, status and badges say so
        self.create_use_cases = create_use_cases
        self._defined: set[str] = set()  # use case names we tried to define (once each)
        self._defining: dict[str, list[_Job]] = {}  # name being defined → jobs to send again after
        self._adopt_at_start = adopt  # take over ended processes' journals (a child leaves that to its parent)

        self._state = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = threading.Event()  # wakes the idle thread
        self._wake = asyncio.Event()  # wakes the draining loop (a new one per loop)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = False
        self._stopping = False
        self._exited = False
        self._spool: Spool | None = None
        self._journal_off: str | None = None  # why there is no journal (events in memory only)
        self._memory_only: dict[str, _Job] = {}  # pending events a full disk kept out of the journal
        self._adopt_again = False  # a full disk stopped adoption: finish it when space returns
        self._adopting = threading.Lock()
        self._headers_cache: tuple[Any, bool, dict[str, str]] = (None, True, {})

        # Shared with submitting threads: appended under _submit_lock together with _submitted.
        self._submit_lock = threading.Lock()
        self._incoming: collections.deque[_Job] = collections.deque()
        self._submitted = 0
        self._last_submit = 0.0  # monotonic time of the latest submit (foreground activity)
        self._backlog_since: float | None = None  # when the oldest not-yet-taken event arrived
        self._urgent = 0  # callers blocked in flush()/wait_priced(): never defer for them
        # Loop-thread state; other threads only read it (under _cv for the counters they wait on).
        self._cv = threading.Condition()
        self._priced = 0
        self._done = 0
        self._ready: collections.deque[_Job] = collections.deque()
        self._in_flight: set[_Job] = set()
        self._requests = 0
        self._lookups: list[tuple[float, int, _Job]] = []  # heap by due time
        self._lookup_seq = itertools.count()
        self._parked: list[_Job] = []
        self._pause_until = 0.0
        self._failures = 0
        self._degraded = False

        self._sent = self._failed = self._retries = self._recovered = 0
        self._reported = (0, 0, 0)
        self._proxied = 0  # calls Pay-i saw in flight (proxy mode): counted, never sent again
        self._errors: collections.deque[str] = collections.deque(maxlen=20)
        self._unknown_models: dict[str, int] = {}
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        self._note: str | None = None

    def __repr__(self) -> str:
        return f"Flusher(endpoint={self.endpoint!r}, running={self.running})"

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool, take over events left by dead processes, start the thread. Idempotent."""
        with self._state:
            if self._thread is not None or self._exited:
                return
            self._stopping = False
            self._note = None
            self._open_spool()
            self._loop = asyncio.new_event_loop()
            self._wake = asyncio.Event()
            self._thread = threading.Thread(target=self._run, name="payi-flusher", daemon=True)
            self._thread.start()
            atexit.register(self._at_exit)

    def _open_spool(self) -> None:
        spool = Spool(self.spool_dir, **({"compact_bytes": self._compact_bytes} if self._compact_bytes else {}))
        try:
            spool.open()
        except OSError as exc:
            self._journal_off = f"cannot create it in {self.spool_dir}: {exc.strerror or exc}"
            self._record_error(f"journal unavailable ({exc}); events are kept in memory only")
            self._spool = None
            self._ready.extend(self._parked)
            self._parked = []
            return
        self._journal_off = None
        with contextlib.suppress(OSError):
            write_info(self.spool_dir, self.endpoint_key)
        self._spool = spool
        mine = {job.event_id: job for job in self._parked}
        self._parked = []
        records = self._adopt(spool, mine) if self._adopt_at_start else []
        adopted = {record.event_id for record in records}
        for job in mine.values():
            if job.journalled and job.event_id not in adopted:
                self._settle(job)  # another process took over our old spool and sends it
                continue
            self._journal(job)
            self._ready.append(job)

    def _adopt(self, spool: Spool, mine: dict[str, _Job] | None = None, source: Any = None) -> list[SpoolRecord]:
        """Take over the events of dead processes' journals (``source``: another endpoint's directory).

        Our own parked events (``mine``, after a restart) go back to the send queue; the others
        are queued as recovered. A record that cannot be rebuilt is quarantined by the spool.
        Journal content never raises out of here.
        """
        mine = mine if mine is not None else {}
        prepared: dict[str, _Job] = {}

        def prepare(record: SpoolRecord) -> None:
            if record.event_id not in mine:
                prepared[record.event_id] = self._recovered_job(record)

        try:
            with self._adopting:
                records = spool.adopt(prepare, source)
        except Exception as exc:  # a bug of ours: reported, and loading goes on
            self._record_error(f"recovering the journal failed: {exc!r}")
            log.exception("payi_notebook: recovering the journal failed")
            return []
        self._adopt_again = spool.full is not None
        recovered: list[_Job] = []
        for record in records:
            job = mine.pop(record.event_id, None)
            if job is None:
                recovered.append(prepared[record.event_id])
            else:
                job.journalled = True
                self._ready.append(job)
        if recovered:
            with self._submit_lock:
                self._incoming.extend(recovered)
                self._submitted += len(recovered)
            self._recovered += len(recovered)
            log.info("payi_notebook: re-sending %d event(s) left in the journal by an earlier run", len(recovered))
        if spool.unreadable_lines:
            log.warning(
                "payi_notebook: %d journal line(s) could not be trusted and were moved to %s",
                spool.unreadable_lines,
                spool.quarantine_path,
            )
        return records

    def deliver(self, directory: Any) -> int:
        """Send the events journalled in another endpoint's ``directory`` to this endpoint."""
        self.start()
        with self._state:
            if self._spool is None:
                raise RuntimeError(f"this session has no journal ({self._journal_off}); nothing can be taken over")
            taken = self._adopt(self._spool, source=directory)
        self._wake_loop()
        return len(taken)

    def adopt_orphans(self) -> int:
        """Take over the unsent events of journals whose process has ended; returns how many.

        A child process that ended without draining (a pool worker stopped with ``os._exit`` or
        SIGTERM) leaves its journal behind; its parent sends what is in it, exactly once.
        """
        with self._state:
            spool = self._spool
            if spool is None or self._thread is None:
                return 0
            taken = self._adopt(spool)
        if taken:
            self._wake_loop()
        return len(taken)

    def release_after_fork(self) -> None:
        """In a forked child: drop this (the parent's) flusher, leaving its journal and queue alone.

        Its thread did not survive the fork and its locks may be held; the journal file, its lock
        and the events in it stay the parent's, which sends them.
        """
        atexit.unregister(self._at_exit)
        if self._spool is not None:
            self._spool.release_after_fork()
        self._spool = None
        self._thread = None
        self._exited = True

    def _recovered_job(self, record: SpoolRecord) -> _Job:
        if record.call is None:
            born = _timestamp((record.body or {}).get("event_timestamp"))
            return _Job(record.event_id, None, None, record.body, record.headers or {}, journalled=True, born=born)
        body, headers = self._render(self._rebuild(record.event_id, record.call))
        born = float(record.call["timestamp"])
        return _Job(record.event_id, None, None, body, headers, journalled=True, born=born)

    def stop(self, timeout: float = 5.0) -> FlushReport:
        """Drain for up to ``timeout`` s, stop the thread; unsent events stay in the spool."""
        report = self.flush(timeout) if self.running else self._report(0.0, False)
        with self._state:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return report
            self._stopping = True
            self._wake_loop()
            thread.join(5.0)
            self._thread = None
            atexit.unregister(self._at_exit)
            left = self._spool.close() if self._spool is not None else 0
            self._spool = None
            if left:
                self._note = f"{left} unsent event(s) kept in {self.spool_dir} for the next start"
                log.warning("payi_notebook: %s", self._note)
        return report

    def _at_exit(self) -> None:
        self.stop(self.settings.exit_timeout)
        self._exited = True

    # ---- hot path --------------------------------------------------------------------------

    def submit(self, item: Any, ref: Any, send: bool = True) -> None:
        """Queue a captured call (row ``ref``) for pricing and, with ``send``, for Pay-i. Never raises.

        ``item`` is a ``UsageEvent`` or capture's call (``event()``, ``lazy``, ``journal()``).
        With ``send`` it is journalled to the spool before this returns: the ingest body, or
        for a deferred call (``item.lazy``) its raw record — its event and body are then built
        on the flusher's thread. Proxied calls pass ``send=False``: Pay-i saw them in flight;
        they are only priced.
        """
        try:
            if self._thread is None:
                if self._exited:
                    if send:
                        self._mark_failed(ref, "the interpreter is exiting; event not sent to Pay-i")
                    return
                self.start()
            if getattr(item, "lazy", False):
                job = _Job(item.event_id, ref, None, None, {}, call=item, send=send, born=item.timestamp)
                if send:
                    self._journal_call(job)
            else:
                event = item if isinstance(item, UsageEvent) else item.event()
                if send:
                    body, headers = self._render(event)
                    job = _Job(event.event_id, ref, event, body, headers, event.provider_response_id is None)
                    job.born = event.timestamp
                    self._journal(job)
                else:
                    job = _Job(event.event_id, ref, event, None, {})
            now = time.monotonic()
            with self._submit_lock:
                self._incoming.append(job)
                self._submitted += 1
                self._proxied += not send
                self._last_submit = now
                if self._backlog_since is None:
                    self._backlog_since = now
            if self._idle:
                self._idle = False
                self._work.set()  # no syscall, no GIL hand-off inside the user's call
        except Exception as exc:  # never break the user's call
            event_id = getattr(item, "event_id", "?")
            self._record_error(f"could not queue event {event_id}: {exc!r}")
            self._mark_failed(ref, f"payi_notebook could not queue this event: {exc!r}")

    def _render(self, event: UsageEvent) -> tuple[dict[str, Any], dict[str, str]]:
        """The ingest body and headers of ``event`` (a cell's calls share one context's headers)."""
        logging_default = self.settings.log_prompt_and_response
        cached_ctx, cached_default, headers = self._headers_cache
        if cached_ctx is not event.context or cached_default != logging_default:
            headers = wire.ingest_headers(event, logging_default)
            self._headers_cache = (event.context, logging_default, headers)
        return wire.ingest_body(event, logging_default), headers

    def _wake_loop(self) -> None:
        """Make the thread look at its queue now (off the hot path: flush, wait_priced, stop)."""
        self._work.set()
        loop = self._loop
        try:
            if loop is not None and not self._idle:
                loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: nothing to cut short
            pass

    def _journal_call(self, job: _Job) -> None:
        spool = self._spool
        if spool is None:
            return
        try:
            spool.append_call(job.event_id, job.call.journal())
            job.journalled = True
        except (OSError, RuntimeError) as exc:
            self._memory_only[job.event_id] = job
            self._record_error(f"journal write failed ({exc}); event {job.event_id} is kept in memory only")

    def _journal(self, job: _Job) -> None:
        spool = self._spool
        if spool is None or job.body is None:
            return
        try:
            spool.append(job.event_id, job.body, job.headers)
            job.journalled = True
        except (OSError, RuntimeError) as exc:
            self._memory_only[job.event_id] = job
            self._record_error(f"journal write failed ({exc}); event {job.event_id} is kept in memory only")

    def _resume_journal(self) -> None:
        """After a full disk (on this thread): once there is room, journal what was kept in memory."""
        spool = self._spool
        if spool is None or not spool.retry():
            return
        for job in list(self._memory_only.values()):
            self._memory_only.pop(job.event_id, None)
            if job.call is not None:
                self._journal_call(job)
            else:
                self._journal(job)
            if not job.journalled:
                return  # full again
        if self._adopt_again:
            self._adopt(spool)

    # ---- waiting ---------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> FlushReport:
        """Block until every submitted event is priced, settled and costed, or ``timeout`` s pass.

        Starts the flusher if needed, so events left in the spool by an earlier run go out too.
        """
        start = time.monotonic()
        deadline = start + max(timeout, 0.0)
        if self._thread is None:
            self.start()
        with self._submit_lock:
            self._urgent += 1
        try:
            self._wake_loop()
            with self._cv:
                while self._done < self._submitted and self.running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(min(remaining, 0.5))
                timed_out = self._done < self._submitted
        finally:
            with self._submit_lock:
                self._urgent -= 1
        return self._report(time.monotonic() - start, timed_out)

    def _report(self, elapsed: float, timed_out: bool) -> FlushReport:
        sent, failed = self._sent, self._failed
        proxied = self._proxied
        last_sent, last_failed, last_proxied = self._reported
        self._reported = (sent, failed, proxied)
        with self._cv:
            errors = tuple(dict.fromkeys(self._errors))
            self._errors.clear()
        return FlushReport(
            sent=sent - last_sent,
            failed=failed - last_failed,
            proxied=proxied - last_proxied,
            pending=len(self._incoming) + len(self._ready) + len(self._parked),
            in_flight=len(self._in_flight),
            awaiting_cost=len(self._lookups),
            timed_out=timed_out,
            elapsed_s=elapsed,
            errors=errors,
        )

    def wait_priced(self, refs: Iterable[Any], timeout: float = 0.5) -> bool:
        """Wait until every event submitted so far (so ``refs``' rows too) has ``est_cost_usd``.

        Pricing runs in submission order, so this needs no per-row bookkeeping.
        """
        if not list(refs):
            return True
        with self._submit_lock:
            target = self._submitted
        deadline = time.monotonic() + timeout
        with self._submit_lock:
            self._urgent += 1
        try:
            if self._priced < target:
                self._wake_loop()
            with self._cv:
                while self._priced < target and self.running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cv.wait(remaining)
                return self._priced >= target
        finally:
            with self._submit_lock:
                self._urgent -= 1

    def status(self) -> FlusherStatus:
        return FlusherStatus(
            endpoint=self.endpoint,
            running=self.running,
            pending=len(self._incoming) + len(self._ready) + len(self._parked),
            in_flight=len(self._in_flight),
            sent=self._sent,
            failed=self._failed,
            retries=self._retries,
            recovered=self._recovered,
            awaiting_cost=len(self._lookups),
            unknown_models=dict(self._unknown_models),
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            last_success_at=self._last_success_at,
            retry_in_s=max(self._pause_until - time.monotonic(), 0.0),
            spool_path=str(self._spool.path) if self._spool is not None and self._spool.path else None,
            note=self._note,
            journal=self.journal_status(),
        )

    def journal_warning(self) -> str | None:
        """Why durability is degraded (journal off, disk full, journal past its cap), or None. Cheap."""
        spool = self._spool
        if spool is None:
            return JournalStatus(None, off=self._journal_off or "not started").warning() if self._thread else None
        return JournalStatus(
            str(spool.path), bytes=spool.written, full=spool.full, memory_only=len(self._memory_only), cap=self.journal_cap
        ).warning()

    def journal_status(self, *, scan: bool = True) -> JournalStatus:
        """The journal's health; with ``scan``, also the journals left for other endpoints."""
        spool = self._spool
        found = others(self.spool_dir.parent, self.spool_dir) if scan else ()
        if spool is None:
            return JournalStatus(None, off=self._journal_off or "not started", others=found)
        if spool.full is not None:
            spool.retry()  # the disk may have room again
        jobs = [*_snapshot(self._incoming), *_snapshot(self._ready), *_snapshot(self._parked), *_snapshot(self._in_flight)]
        born = [job.born for job in jobs if job.born and job.send and (job.body is not None or job.call is not None)]
        return JournalStatus(
            str(spool.path),
            bytes=spool.written,
            oldest_pending_s=max(time.time() - min(born), 0.0) if born else None,
            full=spool.full,
            memory_only=len(self._memory_only),
            torn=spool.torn,
            invalid=tuple(spool.invalid),
            quarantine_path=str(spool.quarantine_path) if spool.quarantine_path else None,
            skipped=dict(spool.skipped),
            others=found,
            cap=self.journal_cap,
        )

    # ---- the loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        """Idle in a plain thread wait (so ``submit`` wakes it without a syscall); drain on the loop."""
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        self._client = AsyncPayiClient(
            self.endpoint, self._key.reveal(), timeout=self._timeout, max_connections=self.concurrency
        )
        try:
            while not self._stopping:
                self._idle = True
                if not self._incoming and not self._stopping:
                    self._work.wait()
                self._idle = False
                self._work.clear()
                if not self._stopping:
                    loop.run_until_complete(self._drain())
        except Exception as exc:  # a bug here must not pass silently
            self._record_error(f"flusher thread crashed: {exc!r}")
            log.exception("payi_notebook: flusher thread crashed")
        finally:
            loop.run_until_complete(self._shut_down())
            loop.close()
            with self._cv:
                self._cv.notify_all()

    def _quiet(self, now: float) -> bool:
        """No call finished lately (cost lookups, which are optional, wait for this)."""
        return bool(self._urgent) or now - self._last_submit >= _QUIET

    def _defer(self) -> float:
        """Seconds to hold back while the foreground makes calls back to back (0: go ahead)."""
        if self._urgent or self._stopping:
            return 0.0
        now = time.monotonic()
        quiet_in = self._last_submit + _QUIET - now
        since = self._backlog_since
        if quiet_in <= 0 or since is None:
            return 0.0
        return max(min(quiet_in, since + _MAX_DEFER - now), 0.0)

    async def _drain(self) -> None:
        """Price and send until nothing is queued, in flight or waiting for a cost lookup."""
        while not self._stopping:
            hold = self._defer()
            if hold > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), hold)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            self._take_incoming()
            if self._memory_only or self._adopt_again:
                self._resume_journal()
            for coro in self._dispatch():
                task = asyncio.ensure_future(coro)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._incoming:  # more to take: let the loop poll (which releases the GIL) first
                await asyncio.sleep(0)
                continue
            if not (self._incoming or self._ready or self._requests or self._lookups):
                return
            timer = self._next_timer()
            try:
                await asyncio.wait_for(self._wake.wait(), _TICK if timer is None else min(timer, _TICK))
            except TimeoutError:
                pass
            self._wake.clear()

    async def _shut_down(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._parked.extend(self._ready)
        self._ready.clear()
        for _, _, job in self._lookups:
            self._settle(job)
        self._lookups.clear()
        if self._client is not None:
            await self._client.aclose()

    def _next_timer(self) -> float | None:
        """Seconds until there may be something to dispatch; None: only a wake-up can bring work."""
        if self._requests >= (1 if self._degraded else self.concurrency):
            return None  # a finishing request wakes the loop
        now = time.monotonic()
        if self._ready:
            return max(self._pause_until - now, 0.0)
        if self._lookups:
            quiet_in = 0.0 if self._quiet(now) else self._last_submit + _QUIET - now
            return max(self._lookups[0][0] - now, self._pause_until - now, quiet_in, 0.0)
        return None

    def _take_incoming(self) -> None:
        """Build, price and queue up to ``_SLICE`` submitted events.

        In slices, so this thread never holds the GIL long while the caller may be waiting for it.
        """
        taken = priced_only = 0
        with self._submit_lock:
            self._backlog_since = None
        while self._incoming and taken < _SLICE:
            job = self._incoming.popleft()
            taken += 1
            if job.call is not None:
                self._build(job)
            if job.event is not None:
                self._price(job)
            if job.body is None:
                priced_only += 1
            else:
                self._ready.append(job)
        if taken:
            if self.ledger is not None:
                self.ledger.materialize()  # deferred rows appear without waiting for a reader
            with self._cv:
                self._priced += taken
                self._done += priced_only
                self._cv.notify_all()

    def _build(self, job: _Job) -> None:
        """A deferred call's event and ingest body, built here, off the caller's request path."""
        call, job.call = job.call, None
        try:
            job.event = call.event()
            if job.send:
                job.body, job.headers = self._render(job.event)
                job.generated_id = job.event.provider_response_id is None
        except Exception as exc:  # a capture bug: the row says so, the spool line is settled
            self._record_error(f"building event {job.event_id} failed: {exc!r}")
            job.body = None
            self._mark_failed(job.ref, f"payi_notebook could not build this event: {exc!r}")
            self._memory_only.pop(job.event_id, None)
            if job.journalled and self._spool is not None:
                self._spool.ack(job.event_id, "failed")

    def _price(self, job: _Job) -> None:
        event = job.event
        assert event is not None
        try:
            price = price_units(event.category, event.resource, event.units)
            estimate = price.estimate
            if not price.priced:
                model = event.resource or wire.UNKNOWN_RESOURCE
                if model not in self._unknown_models:
                    log.warning(
                        "payi_notebook: no local price for %s (%s); est_cost_usd is NaN, Pay-i's cost still applies",
                        model,
                        event.category,
                    )
                self._unknown_models[model] = self._unknown_models.get(model, 0) + 1
        except Exception as exc:
            estimate = math.nan
            self._record_error(f"pricing {event.resource!r} failed: {exc!r}")
        self._update(job, est_cost_usd=estimate)

    def _dispatch(self) -> list[Any]:
        now = time.monotonic()
        if now < self._pause_until:
            return []
        limit = 1 if self._degraded else self.concurrency
        coros: list[Any] = []
        while self._ready and self._requests < limit:
            if len(self._ready) >= self.bulk_threshold and not self._ready[0].single:
                batch: list[_Job] = []
                while self._ready and len(batch) < self.bulk_size and not self._ready[0].single:
                    batch.append(self._ready.popleft())
                coros.append(self._send_bulk(batch))
            else:
                coros.append(self._send_one(self._ready.popleft()))
            self._requests += 1
        if not self._ready and self._quiet(now):
            while self._lookups and self._lookups[0][0] <= now and self._requests < limit:
                coros.append(self._look_up(heapq.heappop(self._lookups)[2]))
                self._requests += 1
        return coros

    def _schedule_lookup(self, job: _Job, delay: float) -> None:
        heapq.heappush(self._lookups, (time.monotonic() + delay, next(self._lookup_seq), job))

    # ---- sending ---------------------------------------------------------------------------

    async def _send_one(self, job: _Job) -> None:
        self._in_flight.add(job)
        try:
            answer = await self._client.ingest(job.body, job.headers)  # type: ignore[arg-type,union-attr]
        except asyncio.CancelledError:
            self._ready.appendleft(job)
            raise
        except PayiError as err:
            self._refused([job], err)
        except Exception as exc:
            self._fail(job, f"could not send to Pay-i: {exc!r}")
        else:
            self._succeeded()
            self._sent_one(job, answer.get("xproxy_result") or {}, answer.get("request_id"))
        finally:
            self._in_flight.discard(job)
            self._requests -= 1
            self._wake.set()

    async def _send_bulk(self, batch: list[_Job]) -> None:
        self._in_flight.update(batch)
        try:
            items = [wire.bulk_item_from(job.body, job.headers) for job in batch]  # type: ignore[arg-type]
            answer = await self._client.ingest_bulk(items)  # type: ignore[union-attr]
        except asyncio.CancelledError:
            self._ready.extendleft(reversed(batch))
            raise
        except PayiError as err:
            if err.retryable or err.status in _HOLD_STATUS:
                self._refused(batch, err)
            else:  # refused as a whole: find the bad items by sending each alone
                self._reachable()
                for job in batch:
                    job.single = True
                self._ready.extendleft(reversed(batch))
        except Exception as exc:
            for job in batch:
                self._fail(job, f"could not send to Pay-i: {exc!r}")
        else:
            errors = {e.get("item_index"): e.get("xproxy_result") or {} for e in answer.get("errors") or []}
            if None in errors:  # an error for the request as a whole: find the bad items alone
                self._reachable()
                for job in batch:
                    job.single = True
                self._ready.extendleft(reversed(batch))
                return
            self._succeeded()
            for index, job in enumerate(batch):
                if index in errors and _undefined_use_case(errors[index]) and self.create_use_cases:
                    job.single = True  # alone, its refusal defines the use case and sends it again
                    self._ready.appendleft(job)
                elif index in errors:
                    self._fail(job, _item_error(errors[index]))
                else:
                    self._sent_one(job, None, None)
                    self._schedule_lookup(job, self.lookup_delay)
        finally:
            self._in_flight.difference_update(batch)
            self._requests -= 1
            self._wake.set()

    async def _look_up(self, job: _Job) -> None:
        body = job.body or {}
        try:
            client = self._client
            assert client is not None
            answer = await client.provider_result(body["category"], body["provider_response_id"])
        except asyncio.CancelledError:
            self._schedule_lookup(job, 0.0)
            raise
        except PayiError as err:
            job.lookups += 1
            if (err.retryable or err.status == 404) and job.lookups < _FOLLOWUP_ATTEMPTS:
                self._schedule_lookup(job, self.lookup_delay + self._backoff(job.lookups))
            else:
                self._record_error(f"no Pay-i cost for event {job.event_id}: {err}")
                self._settle(job)
        else:
            self._update(job, **_result_changes(answer.get("xproxy_result") or {}, None))
            self._settle(job)
        finally:
            self._requests -= 1
            self._wake.set()

    def _refused(self, jobs: list[_Job], err: PayiError) -> None:
        if err.code == USE_CASE_NOT_FOUND and self._define_use_cases(jobs):
            return
        if not (err.retryable or err.status in _HOLD_STATUS):
            self._reachable()
            for job in jobs:
                self._fail(job, str(err) + _use_case_hint(job, err))
            return
        if err.retry_after is not None:  # Pay-i said when: wait that long (a little jitter spreads clients)
            delay = min(err.retry_after, self.backoff_max) * random.uniform(1.0, 1.1)
        else:  # an outage: back off further with each failure in a row
            self._failures += 1
            delay = self._backoff(self._failures)
        self._pause_until = max(self._pause_until, time.monotonic() + delay)
        if not self._degraded:
            log.warning("payi_notebook: %s; events stay queued and are retried with backoff", err)
        self._degraded = True
        self._record_error(str(err))
        self._retries += len(jobs)
        self._ready.extendleft(reversed(jobs))

    def _define_use_cases(self, jobs: list[_Job]) -> bool:
        """Define the jobs' use cases at Pay-i (each name once per flusher), then send each job once more."""
        names = [job.headers.get(_USE_CASE_HEADER) for job in jobs]
        if not self.create_use_cases or None in names or any(job.use_case_retried for job in jobs):
            return False
        for job, name in zip(jobs, names):
            job.use_case_retried = True
            waiting = self._defining.get(name)  # type: ignore[arg-type]
            if waiting is not None:
                waiting.append(job)  # its definition is on the way
            elif name in self._defined:
                self._ready.appendleft(job)
            else:
                self._defining[name] = [job]  # type: ignore[index]
                self._requests += 1
                task = asyncio.ensure_future(self._define(name))  # type: ignore[arg-type]
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return True

    async def _define(self, name: str) -> None:
        from .analytics import routes  # the flusher rarely needs it

        try:
            await self._client.run(routes.create_use_case(name, routes.AUTO_DESCRIPTION))  # type: ignore[union-attr]
            log.info("payi_notebook: defined use case %r at Pay-i (it answered use_case_not_found)", name)
        except PayiError as err:  # already there (a race): sending again is right; else they fail, saying why
            self._record_error(f"could not define use case {name!r}: {err}")
        finally:
            self._defined.add(name)
            self._ready.extendleft(reversed(self._defining.pop(name, [])))
            self._requests -= 1
            self._wake.set()

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 32)))

    def _reachable(self) -> None:
        """Pay-i answered (even with a refusal): leave backoff and probing."""
        if self._degraded:
            log.info("payi_notebook: Pay-i reachable again; sending the queue")
        self._failures = 0
        self._degraded = False

    def _succeeded(self) -> None:
        self._reachable()
        self._last_success_at = time.time()

    # ---- outcomes --------------------------------------------------------------------------

    def _sent_one(self, job: _Job, result: dict[str, Any] | None, request_id: str | None) -> None:
        self._memory_only.pop(job.event_id, None)
        if self._spool is not None:
            self._spool.ack(job.event_id, "sent")
        self._sent += 1
        changes: dict[str, Any] = {"status": "sent"}
        if result is not None:
            changes.update(_result_changes(result, request_id))
        if job.generated_id and job.body is not None:
            changes["provider_response_id"] = job.body["provider_response_id"]
        self._update(job, **changes)
        if result is not None:
            self._settle(job)

    def _fail(self, job: _Job, message: str) -> None:
        self._memory_only.pop(job.event_id, None)
        if self._spool is not None:
            self._spool.ack(job.event_id, "failed")
        self._failed += 1
        with self._cv:
            self._errors.append(message)
        self._record_error(message)
        self._update(job, status="failed", error=message)
        self._settle(job)

    def _settle(self, job: _Job) -> None:
        with self._cv:
            self._done += 1
            self._cv.notify_all()

    def _update(self, job: _Job, **changes: Any) -> None:
        if self.on_update is not None:  # recovered events (no ledger row here) included
            try:
                self.on_update(job.event_id, changes)
            except Exception as exc:
                self._record_error(f"a row listener failed: {exc!r}")
        if job.ref is None or self.ledger is None:
            return
        try:
            self.ledger.update(job.ref, **changes)
        except Exception as exc:
            self._record_error(f"ledger update failed: {exc!r}")

    def _mark_failed(self, ref: Any, message: str) -> None:
        if ref is None or self.ledger is None:
            return
        try:
            self.ledger.update(ref, status="failed", error=message)
        except Exception:
            log.exception("payi_notebook: could not mark a ledger row failed")

    def _record_error(self, message: str) -> None:
        self._last_error = message
        self._last_error_at = time.time()


def _snapshot(jobs: Iterable[_Job]) -> list[_Job]:
    """A copy of a queue another thread may be changing (retried if it changed mid-copy)."""
    for _ in range(5):
        try:
            return list(jobs)
        except RuntimeError:
            continue
    return []


def _timestamp(iso: Any) -> float:
    """Seconds since the epoch of an ingest body's ``event_timestamp`` (0.0 if unreadable)."""
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return 0.0


def _rebuild_call(event_id: str, call: dict[str, Any]) -> UsageEvent:
    """Capture's own reading of a raw call it journalled (imported on first use only)."""
    from .capture.exchange import event_from_journal

    return event_from_journal(event_id, call)


def _result_changes(result: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """Ledger changes from an ``xproxy_result``: Pay-i's cost, request id and limit states."""
    changes: dict[str, Any] = {"xproxy_result": result}
    total = xproxy.cost(result)
    if total is not None:
        changes["payi_cost_usd"] = total
    if rid := result.get("request_id") or request_id:
        changes["payi_request_id"] = rid
    limits = result.get("limits")
    if isinstance(limits, dict):
        changes["limit_states"] = {
            lid: v["state"] for lid, v in limits.items() if isinstance(v, dict) and isinstance(v.get("state"), str)
        }
    return changes


_USE_CASE_HEADER = "xProxy-UseCase-Name"


def _undefined_use_case(error: dict[str, Any]) -> bool:
    return (error.get("xproxy_error") or {}).get("code") == USE_CASE_NOT_FOUND


def _use_case_hint(job: _Job, err: PayiError) -> str:
    """How to fix a ``use_case_not_found`` refusal, in the row's error."""
    name = job.headers.get(_USE_CASE_HEADER)
    if err.code != USE_CASE_NOT_FOUND or not name:
        return ""
    return f" (define it with pn.use_cases.create({name!r}, description=...), then run the cell again)"


def _item_error(error: dict[str, Any]) -> str:
    """A bulk item's ApiError as one line, like ``PayiError.__str__``."""
    code = (error.get("xproxy_error") or {}).get("code")
    message = (error.get("xproxy_error") or {}).get("message") or error.get("message") or "rejected"
    return str(PayiError(error.get("statusCode"), code, message))
