"""The sender's manners towards the caller: hold back while the foreground is busy.

Pricing and sending hold the GIL and would stall the caller's next call. So while calls
complete back to back (submits within ``quiet_s`` of each other) the sender waits, up to
``max_defer_s`` for the oldest waiting event, then goes: the backlog it finds goes out in
bulk, and optional work (cost lookups) waits for a real pause. A caller blocked in
``flush()``/``wait_priced()`` (``urgent``) is never kept waiting.

Submitting threads update it under the sender's submit lock; the sender thread reads it.
"""

from __future__ import annotations

QUIET_S = 0.1
MAX_DEFER_S = 1.0


class ForegroundYield:
    """When the sender may work, given when the foreground last submitted."""

    __slots__ = ("quiet_s", "max_defer_s", "last_submit", "backlog_since", "urgent")

    def __init__(self, quiet_s: float = QUIET_S, max_defer_s: float = MAX_DEFER_S) -> None:
        self.quiet_s = quiet_s
        self.max_defer_s = max_defer_s
        self.last_submit = 0.0  # monotonic time of the latest submit
        self.backlog_since: float | None = None  # when the oldest not-yet-taken event arrived
        self.urgent = 0  # callers blocked waiting on the sender

    def submitted(self, now: float) -> None:
        """A call was queued at ``now`` (caller holds the submit lock)."""
        self.last_submit = now
        if self.backlog_since is None:
            self.backlog_since = now

    def taken(self) -> None:
        """The sender took the backlog (caller holds the submit lock)."""
        self.backlog_since = None

    def quiet(self, now: float) -> bool:
        """No call finished lately, or someone waits: optional work may run."""
        return bool(self.urgent) or now - self.last_submit >= self.quiet_s

    def quiet_in(self, now: float) -> float:
        """Seconds until the foreground counts as quiet (0 if it is)."""
        return 0.0 if self.quiet(now) else self.last_submit + self.quiet_s - now

    def defer(self, now: float) -> float:
        """Seconds to hold back before taking the backlog (0: go ahead)."""
        if self.urgent:
            return 0.0
        quiet_in = self.last_submit + self.quiet_s - now
        since = self.backlog_since
        if quiet_in <= 0 or since is None:
            return 0.0
        return max(min(quiet_in, since + self.max_defer_s - now), 0.0)
