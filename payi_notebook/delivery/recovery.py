"""Crash recovery and the journal's side of the sender: nothing lost, nothing sent twice.

Every event to be sent is journalled before the caller's call returns (its ingest body, or a
deferred call's raw record). At start the sender takes over the journals of ended processes
(``Spool.adopt``) and queues their events as *recovered*; raw records are turned into events
by ``records.replay``. The journal never fails a call: with no journal dir, or a disk too
full for it, the event is kept in memory and still sent, and journalled once there is room.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .jobs import Job
from .journal import JournalStatus, others, write_info
from .spool import Spool, SpoolRecord
from .state import SenderState, log


class Recovery(SenderState):
    _compact_bytes: int | None

    def _open_spool(self) -> None:
        spool = Spool(self.spool_dir, **({"compact_bytes": self._compact_bytes} if self._compact_bytes else {}))
        try:
            spool.open()
        except OSError as exc:
            self._journal_off = f"cannot create it in {self.spool_dir}: {exc.strerror or exc}"
            self.problem(f"journal unavailable ({exc}); events are kept in memory only")
            self._spool = None
            self._ready.extend(self._parked)
            self._parked = []
            return
        self._journal_off = None
        try:
            write_info(self.spool_dir, self.endpoint_key)
        except OSError as exc:  # only the name of the journal's endpoint is lost (listing shows the directory)
            self.problem("could not record which endpoint the journal is for", exc)
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

    def _adopt(self, spool: Spool, mine: dict[str, Job] | None = None, source: Any = None) -> list[SpoolRecord]:
        """Take over the events of dead processes' journals (``source``: another endpoint's directory).

        Our own parked events (``mine``, after a restart) go back to the send queue; the others
        are queued as recovered. A record that cannot be rebuilt is quarantined by the spool.
        Journal content never raises out of here.
        """
        mine = mine if mine is not None else {}
        prepared: dict[str, Job] = {}

        def prepare(record: SpoolRecord) -> None:
            if record.event_id not in mine:
                prepared[record.event_id] = self._recovered_job(record)

        try:
            with self._adopting:
                records = spool.adopt(prepare, source)
        except Exception as exc:  # a bug of ours: reported, and loading goes on
            self.problem("recovering the journal failed", exc)
            return []
        self._adopt_again = spool.full is not None
        recovered: list[Job] = []
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
            self.tallies.recovered += len(recovered)
            log.info("payi_notebook: re-sending %d event(s) left in the journal by an earlier run", len(recovered))
        if spool.unreadable_lines:
            log.warning(
                "payi_notebook: %d journal line(s) could not be trusted and were moved to %s",
                spool.unreadable_lines,
                spool.quarantine_path,
            )
        return records

    def _recovered_job(self, record: SpoolRecord) -> Job:
        if record.call is None:
            born = _timestamp((record.body or {}).get("event_timestamp"))
            return Job(record.event_id, None, None, record.body, record.headers or {}, journalled=True, born=born)
        body, headers = self._render(self._rebuild(record.event_id, record.call))
        born = float(record.call["timestamp"])
        return Job(record.event_id, None, None, body, headers, journalled=True, born=born)

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

    # ---- journalling -----------------------------------------------------------------------

    def _journal_call(self, job: Job) -> None:
        spool = self._spool
        if spool is None or job.call is None:
            return
        try:
            spool.append_call(job.event_id, job.call.journal())
            job.journalled = True
        except (OSError, RuntimeError) as exc:
            self._memory_only[job.event_id] = job
            self.problem(f"journal write failed ({exc}); event {job.event_id} is kept in memory only")

    def _journal(self, job: Job) -> None:
        spool = self._spool
        if spool is None or job.body is None:
            return
        try:
            spool.append(job.event_id, job.body, job.headers)
            job.journalled = True
        except (OSError, RuntimeError) as exc:
            self._memory_only[job.event_id] = job
            self.problem(f"journal write failed ({exc}); event {job.event_id} is kept in memory only")

    def _resume_journal(self) -> None:
        """After a full disk (on the sender thread): once there is room, journal what was kept in memory."""
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

    # ---- health ----------------------------------------------------------------------------

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
        born = [job.born for job in jobs if job.pending]
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


def _snapshot(jobs: Iterable[Job]) -> list[Job]:
    """A copy of a queue another thread may be changing (retried if it changed mid-copy)."""
    for _ in range(5):
        with contextlib.suppress(RuntimeError):
            return list(jobs)
    return []


def _timestamp(iso: Any) -> float:
    """Seconds since the epoch of an ingest body's ``event_timestamp`` (0.0 if unreadable)."""
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return 0.0
