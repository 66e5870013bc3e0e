"""Pay-i's cost for events sent in bulk: ``/ingest/bulk`` answers with no per-item result.

Those rows become ``sent`` at once and get Pay-i's cost (``xproxy_result``) later from
``GET /requests/provider/{category}/{provider_response_id}/result``, looked up only when
nothing is waiting to be sent and the foreground is quiet. A lookup that finds nothing yet
is tried again with backoff a few times; a row whose lookup never succeeds keeps only its
local estimate (and the problem is reported).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Any

from .. import xproxy
from ..client import PayiError
from .jobs import Job
from .state import SenderState

ATTEMPTS = 6


def result_changes(result: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """Ledger changes from an ``xproxy_result``: Pay-i's cost, request id and limit states."""
    changes: dict[str, Any] = {"xproxy_result": result}
    total = xproxy.cost(result)
    if total is not None:
        changes["payi_cost_usd"] = total
    if rid := xproxy.request_id(result) or request_id:
        changes["payi_request_id"] = rid
    if isinstance(result.get("limits"), dict):
        changes["limit_states"] = xproxy.limit_states(result)
    return changes


class Lookups:
    """Jobs waiting for their cost lookup, by due time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, job: Job, delay: float) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))

    def next_due(self) -> float | None:
        """Monotonic time of the earliest lookup, or None."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Job | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def drain(self) -> list[Job]:
        """Every waiting job (at shutdown: they keep their estimate)."""
        jobs = [job for _, _, job in self._heap]
        self._heap.clear()
        return jobs


class ResultFetching(SenderState):
    """The sender's cost lookups for bulk-sent rows."""

    lookups: Lookups

    def _due_lookups(self, now: float, limit: int) -> list[Any]:
        """Lookup coroutines to start now (only with nothing else to send and a quiet foreground)."""
        coros: list[Any] = []
        if self._ready or not self.foreground.quiet(now):
            return coros
        while self._requests < limit and (job := self.lookups.pop_due(now)) is not None:
            coros.append(self._look_up(job))
            self._requests += 1
        return coros

    async def _look_up(self, job: Job) -> None:
        body = job.body or {}
        try:
            client = self._client
            assert client is not None
            answer = await client.provider_result(body["category"], body["provider_response_id"])
        except asyncio.CancelledError:
            self.lookups.schedule(job, 0.0)
            raise
        except PayiError as err:
            job.lookups += 1
            if (err.retryable or err.status == 404) and job.lookups < ATTEMPTS:
                self.lookups.schedule(job, self.lookup_delay + self.backoff.delay(job.lookups))
            else:
                self.problem(f"no Pay-i cost for event {job.event_id}: {err}")
                self._settle(job)
        else:
            self._update(job, **result_changes(xproxy.of_body(answer) or {}, None))
            self._settle(job)
        finally:
            self._requests -= 1
            self._wake.set()
