"""Where our own failures go: one sink that capture, delivery and the session all report to.

A failure of ours is never raised into the user's cell; it is logged, kept here, and shown by
``%payi status`` and the badge. Delivery reads ``since(mark)`` for the errors of one flush.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("payi_notebook")


@dataclass(frozen=True, slots=True)
class Problem:
    """One failure: when, where it came from (``capture``, ``delivery``, ``session``...), what."""

    when: float
    source: str
    message: str


class Problems:
    """A bounded, thread-safe record of recent failures, numbered so readers can ask for news."""

    def __init__(self, keep: int = 100) -> None:
        self._items: deque[Problem] = deque(maxlen=keep)
        self._count = 0
        self._lock = threading.Lock()

    def report(self, source: str, what: str, exc: BaseException | None = None) -> Problem:
        """Log and keep a failure; the traceback is logged only at DEBUG (it may be long)."""
        message = f"{what}: {type(exc).__name__}: {exc}" if exc is not None else what
        debug = exc is not None and log.isEnabledFor(logging.DEBUG)
        log.warning("%s: %s", source, message, exc_info=exc if debug else None)
        problem = Problem(time.time(), source, message)
        with self._lock:
            self._items.append(problem)
            self._count += 1
        return problem

    def mark(self) -> int:
        """A position to pass to ``since`` later."""
        return self._count

    def since(self, mark: int, source: str | None = None) -> tuple[Problem, ...]:
        """The failures reported after ``mark`` that are still kept, optionally from one source."""
        with self._lock:
            fresh = list(self._items)[max(0, len(self._items) - (self._count - mark)):]
        return tuple(p for p in fresh if source is None or p.source == source)

    def recent(self, n: int = 5) -> tuple[Problem, ...]:
        with self._lock:
            return tuple(self._items)[-n:]

    def last(self, source: str | None = None) -> Problem | None:
        """The newest failure (from ``source`` if given), or None."""
        with self._lock:
            for problem in reversed(self._items):
                if source is None or problem.source == source:
                    return problem
        return None

    def __len__(self) -> int:
        return len(self._items)
