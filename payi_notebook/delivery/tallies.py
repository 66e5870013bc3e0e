"""What the sender has done: the counters behind ``FlushReport`` (per flush) and ``FlusherStatus``.

Counters are written by the sender thread only; other threads read them. Errors are not kept
here: the sender reports them to the session's ``Problems`` sink (source ``delivery``), and a
report lists the ones since the previous report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ..problems import Problems
from .journal import JournalStatus

SOURCE = "delivery"


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


class Tallies:
    """Counts of delivered, failed, retried, recovered and proxied events, and unpriced models."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.sent = self.failed = self.retries = self.recovered = 0
        self.proxied = 0  # calls Pay-i saw in flight (proxy mode): counted, never sent again
        self.unknown_models: dict[str, int] = {}
        self.last_success_at: float | None = None
        self._reported = (0, 0, 0)
        self._mark = problems.mark()

    def succeeded(self) -> None:
        self.last_success_at = time.time()

    def unpriced(self, model: str) -> bool:
        """Count an event of a model with no local price; True the first time for that model."""
        first = model not in self.unknown_models
        self.unknown_models[model] = self.unknown_models.get(model, 0) + 1
        return first

    def report(self, *, pending: int, in_flight: int, awaiting_cost: int, timed_out: bool, elapsed: float) -> FlushReport:
        """A ``FlushReport`` of what happened since the previous one."""
        sent, failed, proxied = self.sent, self.failed, self.proxied
        last_sent, last_failed, last_proxied = self._reported
        self._reported = (sent, failed, proxied)
        mark, self._mark = self._mark, self.problems.mark()
        errors = tuple(dict.fromkeys(p.message for p in self.problems.since(mark, SOURCE)))
        return FlushReport(
            sent=sent - last_sent,
            failed=failed - last_failed,
            proxied=proxied - last_proxied,
            pending=pending,
            in_flight=in_flight,
            awaiting_cost=awaiting_cost,
            timed_out=timed_out,
            elapsed_s=elapsed,
            errors=errors,
        )
