"""What callers of the sender wait on and read: ``flush()``, ``wait_priced()``, ``status()``.

A waiting caller counts as *urgent*: the sender stops holding back for the foreground while
someone waits on it (``yielding.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .results import Lookups
from .state import SenderState
from .tallies import SOURCE, FlusherStatus, FlushReport


class Waiting(SenderState):
    lookups: Lookups
    _note: str | None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def flush(self, timeout: float = 30.0) -> FlushReport:
        """Block until every submitted event is priced, settled and costed, or ``timeout`` s pass.

        Starts the sender if needed, so events left in the journal by an earlier run go out too.
        """
        start = time.monotonic()
        deadline = start + max(timeout, 0.0)
        if self._thread is None:
            self.start()
        with self._urgent():
            self._wake_loop()
            with self._cv:
                while self._done < self._submitted and self.running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(min(remaining, 0.5))
                timed_out = self._done < self._submitted
        return self._report(time.monotonic() - start, timed_out)

    @contextlib.contextmanager
    def _urgent(self) -> Iterator[None]:
        """A caller waits on the sender: it does not hold back meanwhile."""
        with self._submit_lock:
            self.foreground.urgent += 1
        try:
            yield
        finally:
            with self._submit_lock:
                self.foreground.urgent -= 1

    def _pending(self) -> int:
        return len(self._incoming) + len(self._ready) + len(self._parked)

    def _report(self, elapsed: float, timed_out: bool) -> FlushReport:
        self._last_problem = None  # the next report lists a repeated problem again
        return self.tallies.report(
            pending=self._pending(),
            in_flight=len(self._in_flight),
            awaiting_cost=len(self.lookups),
            timed_out=timed_out,
            elapsed=elapsed,
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
        with self._urgent():
            if self._priced < target:
                self._wake_loop()
            with self._cv:
                while self._priced < target and self.running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cv.wait(remaining)
                return self._priced >= target

    def status(self) -> FlusherStatus:
        tallies = self.tallies
        last = self.problems.last(SOURCE)
        return FlusherStatus(
            endpoint=self.endpoint,
            running=self.running,
            pending=self._pending(),
            in_flight=len(self._in_flight),
            sent=tallies.sent,
            failed=tallies.failed,
            retries=tallies.retries,
            recovered=tallies.recovered,
            awaiting_cost=len(self.lookups),
            unknown_models=dict(tallies.unknown_models),
            last_error=last.message if last is not None else None,
            last_error_at=last.when if last is not None else None,
            last_success_at=tallies.last_success_at,
            retry_in_s=self.backoff.retry_in(),
            spool_path=str(self._spool.path) if self._spool is not None and self._spool.path else None,
            note=self._note,
            journal=self.journal_status(),
        )
