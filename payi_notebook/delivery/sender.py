"""The sender: one daemon thread that prices every captured event and delivers telemetry to Pay-i.

``submit()`` is the only part on the caller's request path: it journals the event (its ingest
body, or a deferred call's raw record) and queues it, and never raises. It never wakes the
thread while the thread is working, so a call costs no GIL hand-off; an idle thread is woken
by setting a plain event. Everything else runs on the thread with its own asyncio loop (never
the kernel's loop):

- **pricing**: ``est_cost_usd`` for every submitted event (telemetry and proxied), so
  genai-prices lookups stay off the request path; ``wait_priced()`` lets a badge wait;
- **yielding**: while calls complete back to back the thread holds back (``yielding.py``);
- **sending**: requests, bulk batches, retries and refusals (``sending.py``, ``batching.py``,
  ``backoff.py``); Pay-i's cost for bulk-sent rows (``results.py``); undefined use cases
  (``use_cases.py``);
- **recovery**: the journal, and events left by ended processes (``recovery.py``).

Failures of ours go to the ``problems`` sink (source ``delivery``). ``stop()`` drains for a
bounded time; what is left stays in the journal and is sent by the next sender for the same
endpoint. The session owns exit-time delivery (it calls ``stop`` at interpreter exit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import records, wire
from ..client import AsyncPayiClient, check_endpoint
from ..config import Settings
from ..events import UsageEvent
from ..problems import Problems
from ..records import CallRecord
from ..secret import Secret
from .backoff import Backoff
from .batching import Batching
from .intake import Intake
from .jobs import Job
from .journal import LARGE_BYTES
from .places import endpoint_dir, endpoint_key_for
from .recovery import Recovery
from .results import Lookups
from .sending import Sending
from .state import LedgerLike, log
from .tallies import FlushReport, Tallies
from .waiting import Waiting
from .yielding import ForegroundYield

TICK = 0.05  # while draining, new events are picked up at least this often without a wake-up


class Flusher(Recovery, Sending, Intake, Waiting):
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
        rebuild: Callable[[str, Mapping[str, Any]], UsageEvent] | None = None,
        journal_cap: int = LARGE_BYTES,
        create_use_cases: bool = True,
        adopt: bool = True,
        problems: Problems | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency, bulk_size and bulk_threshold must be at least 1")
        self.batching = Batching(bulk_threshold, bulk_size)
        self.backoff = Backoff(backoff_base, backoff_max)
        check_endpoint(base_url, api_key)
        self.ledger = ledger
        self.on_update = None  # sees every row change by event id
        self.endpoint = base_url.rstrip("/")
        self._key = Secret(api_key)
        self._timeout = timeout
        self._client = None
        self.endpoint_key = endpoint_key or endpoint_key_for(base_url)
        self.spool_dir = endpoint_dir(spool_dir, self.endpoint_key)
        self.concurrency = concurrency
        # The owner of log_prompt_and_response and exit_timeout: the session's settings (read
        # at each use, so pn.configure applies at once), or this sender's own when standalone.
        self.settings = settings or Settings(log_prompt_and_response=log_prompt_and_response, exit_timeout=exit_timeout)
        self.lookup_delay = lookup_delay
        self._compact_bytes = compact_bytes
        self._rebuild = rebuild or records.replay  # raw captured calls recovered from a journal → events
        self.journal_cap = journal_cap  # past this many bytes of journal, status and badges say so
        self.create_use_cases = create_use_cases
        self.problems = problems if problems is not None else Problems()
        self._last_problem = None
        self.tallies = Tallies(self.problems)
        self.foreground = ForegroundYield()
        self.lookups = Lookups()
        self._defined = set()  # use case names we tried to define (once each)
        self._defining = {}  # name being defined → jobs to send again after
        self._adopt_at_start = adopt  # take over ended processes' journals (a child leaves that to its parent)

        self._state = threading.RLock()
        self._thread = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work = threading.Event()  # wakes the idle thread
        self._wake = asyncio.Event()  # wakes the draining loop (a new one per loop)
        self._tasks = set()
        self._idle = False
        self._stopping = False
        self._exited = False
        self._spool = None
        self._journal_off = None  # why there is no journal (events in memory only)
        self._memory_only = {}  # pending events a full disk kept out of the journal
        self._adopt_again = False  # a full disk stopped adoption: finish it when space returns
        self._adopting = threading.Lock()
        self._headers_cache: tuple[Any, bool, dict[str, str]] = (None, True, {})

        # Shared with submitting threads: appended under _submit_lock together with _submitted.
        self._submit_lock = threading.Lock()
        self._incoming = collections.deque()
        self._submitted = 0
        # Sender-thread state; other threads only read it (under _cv for the counters they wait on).
        self._cv = threading.Condition()
        self._priced = 0
        self._done = 0
        self._ready = collections.deque()
        self._in_flight = set()
        self._requests = 0
        self._parked = []
        self._note: str | None = None

    def __repr__(self) -> str:
        return f"Flusher(endpoint={self.endpoint!r}, running={self.running})"

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the journal, take over events left by ended processes, start the thread. Idempotent."""
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

    def release_after_fork(self) -> None:
        """In a forked child: drop this (the parent's) sender, leaving its journal and queue alone.

        Its thread did not survive the fork and its locks may be held; the journal file, its lock
        and the events in it stay the parent's, which sends them.
        """
        if self._spool is not None:
            self._spool.release_after_fork()
        self._spool = None
        self._thread = None
        self._exited = True

    def stop(self, timeout: float = 5.0) -> FlushReport:
        """Drain for up to ``timeout`` s, stop the thread; unsent events stay in the journal."""
        report = self.flush(timeout) if self.running else self._report(0.0, False)
        with self._state:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return report
            self._stopping = True
            self._wake_loop()
            thread.join(5.0)
            self._thread = None
            left = self._spool.close() if self._spool is not None else 0
            self._spool = None
            if left:
                self._note = f"{left} unsent event(s) kept in {self.spool_dir} for the next start"
                log.warning("payi_notebook: %s", self._note)
        return report

    # ---- hot path --------------------------------------------------------------------------

    def submit(self, item: UsageEvent | CallRecord, ref: Any, send: bool = True) -> None:
        """Queue a captured call (row ``ref``) for pricing and, with ``send``, for Pay-i. Never raises.

        With ``send`` it is journalled before this returns: the ingest body, or for a deferred
        call (``CallRecord.lazy``) its raw record, whose event and body are then built on the
        sender thread. Proxied calls pass ``send=False``: Pay-i saw them in flight; they are
        only priced.
        """
        try:
            if self._thread is None:
                if self._exited:
                    if send:
                        self._mark_failed(ref, "the interpreter is exiting; event not sent to Pay-i")
                    return
                self.start()
            if isinstance(item, UsageEvent) or not item.lazy:
                event = item if isinstance(item, UsageEvent) else item.event()
                if send:
                    body, headers = self._render(event)
                    job = Job(event.event_id, ref, event, body, headers, event.provider_response_id is None)
                    job.born = event.timestamp
                    self._journal(job)
                else:
                    job = Job(event.event_id, ref, event, None, {})
            else:
                job = Job(item.event_id, ref, None, None, {}, call=item, send=send, born=item.timestamp)
                if send:
                    self._journal_call(job)
            now = time.monotonic()
            with self._submit_lock:
                self._incoming.append(job)
                self._submitted += 1
                self.tallies.proxied += not send
                self.foreground.submitted(now)
            if self._idle:
                self._idle = False
                self._work.set()  # only an idle thread is woken: a busy one finds the job on its own
        except Exception as exc:  # never break the user's call
            self.problem(f"could not queue event {getattr(item, 'event_id', '?')}", exc)
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
        if loop is not None and not self._idle:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to cut short
                loop.call_soon_threadsafe(self._wake.set)

    # ---- the sender thread -----------------------------------------------------------------

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
            self.problem("the delivery thread crashed", exc)
        finally:
            loop.run_until_complete(self._shut_down())
            loop.close()
            with self._cv:
                self._cv.notify_all()

    async def _drain(self) -> None:
        """Price and send until nothing is queued, in flight or waiting for a cost lookup."""
        while not self._stopping:
            hold = self.foreground.defer(time.monotonic())
            if hold > 0:
                if self._spool is not None:
                    self._spool.reserve_ahead()  # while holding back, so the callers' appends never remap
                await self._sleep(hold)
                continue
            self._take_incoming()
            if self._memory_only or self._adopt_again:
                self._resume_journal()
            for coro in self._dispatch():
                self._spawn(coro)
            if self._incoming:  # more to take: let the loop poll (which releases the GIL) first
                await asyncio.sleep(0)
                continue
            if not (self._incoming or self._ready or self._requests or len(self.lookups)):
                return
            timer = self._next_timer()
            await self._sleep(TICK if timer is None else min(timer, TICK))

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until woken (a finished request, flush, stop)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _shut_down(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._parked.extend(self._ready)
        self._ready.clear()
        for job in self.lookups.drain():
            self._settle(job)
        if self._client is not None:
            await self._client.aclose()

    def _next_timer(self) -> float | None:
        """Seconds until there may be something to dispatch; None: only a wake-up can bring work."""
        if self._requests >= self.backoff.limit(self.concurrency):
            return None  # a finishing request wakes the loop
        now = time.monotonic()
        if self._ready:
            return self.backoff.retry_in()
        due = self.lookups.next_due()
        if due is not None:
            return max(due - now, self.backoff.retry_in(), self.foreground.quiet_in(now), 0.0)
        return None
