"""The sender's shared state, declared once for the modules that each do one part of its work.

``Flusher`` (``sender.py``) is assembled from ``Recovery`` (crash recovery and the journal),
``Sending`` (requests and outcomes), ``ResultFetching`` and ``UseCases``; this base names what
they share so each module reads (and type-checks) on its own.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..client import AsyncPayiClient
from ..config import Settings
from ..events import UsageEvent
from ..problems import Problems
from .backoff import Backoff
from .batching import Batching
from .jobs import Job
from .journal import JournalStatus
from .spool import Spool
from .tallies import SOURCE, Tallies
from .yielding import ForegroundYield

log = logging.getLogger("payi_notebook.delivery")


class LedgerLike(Protocol):
    def update(self, ref: Any, **changes: Any) -> bool: ...

    def materialize(self) -> None: ...


class SenderState:
    """Attributes shared by the sender's parts (set in ``Flusher.__init__``)."""

    ledger: LedgerLike | None
    on_update: Callable[[str, dict[str, Any]], None] | None
    endpoint: str
    endpoint_key: str
    spool_dir: Any
    settings: Settings
    problems: Problems
    tallies: Tallies
    backoff: Backoff
    batching: Batching
    foreground: ForegroundYield
    concurrency: int
    lookup_delay: float
    create_use_cases: bool
    journal_cap: int
    _rebuild: Callable[[str, Mapping[str, Any]], UsageEvent]
    _client: AsyncPayiClient | None
    _thread: threading.Thread | None
    _state: threading.RLock
    _submit_lock: threading.Lock
    _cv: threading.Condition
    _wake: asyncio.Event
    _tasks: set[asyncio.Task[None]]
    _incoming: collections.deque[Job]
    _ready: collections.deque[Job]
    _in_flight: set[Job]
    _parked: list[Job]
    _submitted: int
    _priced: int
    _done: int
    _requests: int
    _spool: Spool | None
    _journal_off: str | None
    _memory_only: dict[str, Job]
    _adopt_again: bool
    _adopting: threading.Lock
    _adopt_at_start: bool
    _defined: set[str]
    _defining: dict[str, list[Job]]
    _last_problem: str | None

    def problem(self, what: str, exc: BaseException | None = None) -> None:
        """A failure of ours, to the problems sink (the same message twice in a row once)."""
        message = f"{what}: {type(exc).__name__}: {exc}" if exc is not None else what
        if message == self._last_problem:
            return
        self._last_problem = message
        self.problems.report(SOURCE, what, exc)

    # Provided by the parts that own them (sender, recovery):
    def start(self) -> None:
        raise NotImplementedError

    def journal_status(self, *, scan: bool = True) -> JournalStatus:
        raise NotImplementedError

    def _render(self, event: UsageEvent) -> tuple[dict[str, Any], dict[str, str]]:
        raise NotImplementedError

    def _wake_loop(self) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task of the sender's loop (kept until done)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle(self, job: Job) -> None:
        """``job`` needs nothing more (flush waits for every submitted job to settle)."""
        with self._cv:
            self._done += 1
            self._cv.notify_all()

    def _update(self, job: Job, **changes: Any) -> None:
        """Apply ``changes`` to the job's ledger row (and tell the row listener)."""
        if self.on_update is not None:  # recovered events (no ledger row here) included
            try:
                self.on_update(job.event_id, changes)
            except Exception as exc:
                self.problem("a row listener failed", exc)
        if job.ref is None or self.ledger is None:
            return
        try:
            self.ledger.update(job.ref, **changes)
        except Exception as exc:
            self.problem("ledger update failed", exc)

    def _mark_failed(self, ref: Any, message: str) -> None:
        if ref is None or self.ledger is None:
            return
        try:
            self.ledger.update(ref, status="failed", error=message)
        except Exception as exc:
            self.problem("could not mark a ledger row failed", exc)
