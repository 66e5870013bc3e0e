"""When sending may resume after Pay-i failed to answer: pure arithmetic on an injectable clock.

Connection errors, timeouts, 408, 429, 5xx and a refused key pause all sending: for the
``Retry-After`` Pay-i gave (capped, with a little jitter so clients spread out), else for an
exponential backoff with full jitter that grows with each failure in a row. While degraded the
sender probes with one request at a time; any answer from Pay-i ends it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """The pause after failures. ``clock`` and ``rng`` are injectable so tests need no sleeping."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff_base must be > 0 and backoff_max >= backoff_base")
        self.base = base
        self.cap = cap
        self.clock = clock
        self._rng = rng or random.Random()
        self.failures = 0  # failures in a row without a Retry-After
        self.pause_until = 0.0
        self.degraded = False  # Pay-i is unreachable: probe with one request at a time

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return self._rng.uniform(0.0, min(self.cap, self.base * 2 ** min(attempt - 1, 32)))

    def failed(self, retry_after: float | None) -> bool:
        """Pause sending after a retryable failure; True when this one started an outage."""
        if retry_after is not None:
            delay = min(retry_after, self.cap) * self._rng.uniform(1.0, 1.1)
        else:
            self.failures += 1
            delay = self.delay(self.failures)
        self.pause_until = max(self.pause_until, self.clock() + delay)
        started = not self.degraded
        self.degraded = True
        return started

    def reachable(self) -> bool:
        """Pay-i answered (even with a refusal); True when that ended an outage."""
        ended = self.degraded
        self.failures = 0
        self.degraded = False
        return ended

    def paused(self, now: float) -> bool:
        return now < self.pause_until

    def retry_in(self) -> float:
        """Seconds until sending resumes (0 when it is not paused)."""
        return max(self.pause_until - self.clock(), 0.0)

    def limit(self, concurrency: int) -> int:
        """Requests allowed at once: one probe while degraded."""
        return 1 if self.degraded else concurrency
