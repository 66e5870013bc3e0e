"""What the sender thread does first with each submitted job: build, price, queue.

A deferred call's event and ingest body are built here, off the caller's request path, and
every event (telemetry and proxied) gets its local estimate (``est_cost_usd``) here, so
genai-prices lookups stay off it too. In slices: the thread never holds the GIL long while
the caller may be waiting for it.
"""

from __future__ import annotations

import math

from .. import wire
from ..pricing import price_units
from .jobs import Job
from .state import SenderState, log

SLICE = 4  # events built and priced between two polls of the loop (each poll releases the GIL)


class Intake(SenderState):
    _priced: int

    def _take_incoming(self) -> None:
        """Build, price and queue up to ``SLICE`` submitted events.

        In slices, so this thread never holds the GIL long while the caller may be waiting for it.
        """
        taken = priced_only = 0
        with self._submit_lock:
            self.foreground.taken()
        while self._incoming and taken < SLICE:
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
            if self._spool is not None:
                self._spool.reserve_ahead()  # here, so the callers' appends never remap
            if self.ledger is not None:
                self.ledger.materialize()  # deferred rows appear without waiting for a reader
            with self._cv:
                self._priced += taken
                self._done += priced_only
                self._cv.notify_all()

    def _build(self, job: Job) -> None:
        """A deferred call's event and ingest body, built here, off the caller's request path."""
        call, job.call = job.call, None
        assert call is not None
        try:
            job.event = call.event()
            if job.send:
                job.body, job.headers = self._render(job.event)
                job.generated_id = job.event.provider_response_id is None
        except Exception as exc:  # a capture bug: the row says so, the journal line is settled
            self.problem(f"building event {job.event_id} failed", exc)
            job.body = None
            self._mark_failed(job.ref, f"payi_notebook could not build this event: {exc!r}")
            self._memory_only.pop(job.event_id, None)
            if job.journalled and self._spool is not None:
                self._spool.ack(job.event_id, "failed")

    def _price(self, job: Job) -> None:
        event = job.event
        assert event is not None
        try:
            price = price_units(event.category, event.resource, event.units)
            estimate = price.estimate
            if not price.priced:
                model = event.resource or wire.UNKNOWN_RESOURCE
                if self.tallies.unpriced(model):
                    log.warning(
                        "payi_notebook: no local price for %s (%s); est_cost_usd is NaN, Pay-i's cost still applies",
                        model,
                        event.category,
                    )
        except Exception as exc:
            estimate = math.nan
            self.problem(f"pricing {event.resource!r} failed", exc)
        self._update(job, est_cost_usd=estimate)
