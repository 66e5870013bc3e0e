"""One event on its way to Pay-i, as the sender thread tracks it from submit to settled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..events import UsageEvent
from ..records import CallRecord


@dataclass(eq=False, slots=True)
class Job:
    event_id: str
    ref: Any  # the ledger row (None for events recovered from a journal)
    event: UsageEvent | None  # None until a deferred call is built, and for recovered events
    body: dict[str, Any] | None  # the ingest body; None: price only, do not send
    headers: dict[str, str]
    generated_id: bool = False  # the provider gave no response id: we made one up
    journalled: bool = False
    call: CallRecord | None = None  # a deferred call: its event (and body, with send) are built on the sender thread
    send: bool = True
    single: bool = False  # a bulk batch holding it was refused as a whole: send it alone
    lookups: int = 0
    born: float = 0.0  # wall-clock time of the call (the age of the oldest pending event)
    use_case_retried: bool = False  # sent again after its use case was defined (only once)

    @property
    def pending(self) -> bool:
        """Still to be delivered (counts towards the age of the oldest pending event)."""
        return bool(self.born) and self.send and (self.body is not None or self.call is not None)
