"""Requests to Pay-i and what their answers mean for each event.

``POST /ingest`` with the context as ``xProxy-*`` headers, at most ``concurrency`` at once
(one probe while Pay-i is unreachable); under backlog, bulk batches (``batching.py``). Each
answer's ``xproxy_result`` (Pay-i cost, request id, limit states) goes onto the event's row;
a ``duplicate_request`` answer counts as sent. Connection errors, timeouts, 408, 429, 5xx and
a refused key (401/403, which says nothing about the event) pause all sending
(``backoff.py``) and keep the events queued, and in the journal, with no retry cap: every retry
reuses the event's ``provider_response_id``, so Pay-i de-duplicates. Any other refusal fails
the row with Pay-i's message. A bulk batch refused as a whole is re-sent item by item.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from .. import wire, xproxy
from ..client import PayiError
from .jobs import Job
from .results import ResultFetching, result_changes
from .state import log
from .use_cases import USE_CASE_NOT_FOUND, UseCases, undefined_use_case, use_case_hint

HOLD_STATUS = frozenset({401, 403})  # the key, not the event, is refused: keep events and retry


class Sending(ResultFetching, UseCases):
    def _dispatch(self) -> list[Any]:
        """Coroutines for the requests that may start now."""
        now = time.monotonic()
        if self.backoff.paused(now):
            return []
        limit = self.backoff.limit(self.concurrency)
        coros: list[Any] = []
        while self._ready and self._requests < limit:
            batch, bulk = self.batching.take(self._ready)
            coros.append(self._send_bulk(batch) if bulk else self._send_one(batch[0]))
            self._requests += 1
        coros.extend(self._due_lookups(now, limit))
        return coros

    async def _send_one(self, job: Job) -> None:
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
            self._sent_one(job, xproxy.of_body(answer) or {}, answer.get("request_id"))
        finally:
            self._in_flight.discard(job)
            self._requests -= 1
            self._wake.set()

    async def _send_bulk(self, batch: list[Job]) -> None:
        self._in_flight.update(batch)
        try:
            items: list[Mapping[str, Any]] = [wire.bulk_item_from(job.body, job.headers) for job in batch]  # type: ignore[arg-type]
            answer = await self._client.ingest_bulk(items)  # type: ignore[union-attr]
        except asyncio.CancelledError:
            self._ready.extendleft(reversed(batch))
            raise
        except PayiError as err:
            if err.retryable or err.status in HOLD_STATUS:
                self._refused(batch, err)
            else:  # refused as a whole: find the bad items by sending each alone
                self._one_by_one(batch)
        except Exception as exc:
            for job in batch:
                self._fail(job, f"could not send to Pay-i: {exc!r}")
        else:
            errors = {e.get("item_index"): xproxy.of_body(e) or {} for e in answer.get("errors") or []}
            if None in errors:  # an error for the request as a whole: find the bad items alone
                self._one_by_one(batch)
                return
            self._succeeded()
            for index, job in enumerate(batch):
                if index in errors and undefined_use_case(errors[index]) and self.create_use_cases:
                    job.single = True  # alone, its refusal defines the use case and sends it again
                    self._ready.appendleft(job)
                elif index in errors:
                    self._fail(job, _item_error(errors[index]))
                else:
                    self._sent_one(job, None, None)
                    self.lookups.schedule(job, self.lookup_delay)
        finally:
            self._in_flight.difference_update(batch)
            self._requests -= 1
            self._wake.set()

    def _one_by_one(self, batch: list[Job]) -> None:
        self._reachable()
        for job in batch:
            job.single = True
        self._ready.extendleft(reversed(batch))

    def _refused(self, jobs: list[Job], err: PayiError) -> None:
        if err.code == USE_CASE_NOT_FOUND and self._define_use_cases(jobs):
            return
        if not (err.retryable or err.status in HOLD_STATUS):
            self._reachable()
            for job in jobs:
                self._fail(job, str(err) + use_case_hint(job, err))
            return
        if self.backoff.failed(err.retry_after):
            log.warning("payi_notebook: %s; events stay queued and are retried with backoff", err)
        self.problem(str(err))
        self.tallies.retries += len(jobs)
        self._ready.extendleft(reversed(jobs))

    def _reachable(self) -> None:
        """Pay-i answered (even with a refusal): leave backoff and probing."""
        if self.backoff.reachable():
            log.info("payi_notebook: Pay-i reachable again; sending the queue")

    def _succeeded(self) -> None:
        self._reachable()
        self.tallies.succeeded()

    def _sent_one(self, job: Job, result: dict[str, Any] | None, request_id: str | None) -> None:
        self._memory_only.pop(job.event_id, None)
        if self._spool is not None:
            self._spool.ack(job.event_id, "sent")
        self.tallies.sent += 1
        changes: dict[str, Any] = {"status": "sent"}
        if result is not None:
            changes.update(result_changes(result, request_id))
        if job.generated_id and job.body is not None:
            changes["provider_response_id"] = job.body["provider_response_id"]
        self._update(job, **changes)
        if result is not None:
            self._settle(job)

    def _fail(self, job: Job, message: str) -> None:
        self._memory_only.pop(job.event_id, None)
        if self._spool is not None:
            self._spool.ack(job.event_id, "failed")
        self.tallies.failed += 1
        self.problem(message)
        self._update(job, status="failed", error=message)
        self._settle(job)


def _item_error(error: dict[str, Any]) -> str:
    """A bulk item's ApiError as one line, like ``PayiError.__str__``."""
    code = (error.get("xproxy_error") or {}).get("code")
    message = (error.get("xproxy_error") or {}).get("message") or error.get("message") or "rejected"
    return str(PayiError(error.get("statusCode"), code, message))

