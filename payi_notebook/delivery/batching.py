"""How the ready queue is cut into requests: one event each, or bulk batches under backlog.

With ``threshold`` or more events waiting, batches of up to ``size`` go to ``/ingest/bulk``
(one request instead of a hundred); otherwise each event goes alone to ``/ingest``, which
answers with its ``xproxy_result`` at once. An event whose bulk batch was refused as a whole
(``single``) goes alone, so one bad event cannot fail its neighbours.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .jobs import Job


@dataclass(frozen=True, slots=True)
class Batching:
    threshold: int = 50
    size: int = 100

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.size < 1:
            raise ValueError("bulk_size and bulk_threshold must be at least 1")

    def take(self, ready: deque[Job]) -> tuple[list[Job], bool]:
        """The next request's events, taken from the front of ``ready``, and whether it is a bulk one."""
        if len(ready) >= self.threshold and not ready[0].single:
            batch: list[Job] = []
            while ready and len(batch) < self.size and not ready[0].single:
                batch.append(ready.popleft())
            return batch, True
        return [ready.popleft()], False
