"""A finished provider call as capture hands it over: its ``UsageEvent`` is built on first use.

Building an event (decoding the response, deriving units) costs more than the rest of a
call's capture, so capture does not do it on the caller's request path when it can wait:
a ``CallRecord`` owns that deferral. The ledger reserves a row for it and the delivery thread
builds it (``event()``) or journals its raw record (``journal()``) first. Capture creates
records, delivery consumes them, and neither imports the other: this module sits below both.

A raw record read back from the journal after a crash is turned into its event by
``replay``, which uses the reader capture registers when it is imported (delivery never
imports capture).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from .events import Mode, UsageEvent

JournalReader = Callable[[str, Mapping[str, Any]], UsageEvent]


class CallRecord(ABC):
    """One finished call. ``lazy``: its event is still to be built, off the request path."""

    __slots__ = ()

    event_id: str
    timestamp: float  # epoch seconds, just before the call
    mode: Mode
    lazy: bool

    @abstractmethod
    def event(self) -> UsageEvent:
        """The call's event, built on first use (thread-safe; later calls return the same one)."""

    @abstractmethod
    def journal(self) -> dict[str, Any]:
        """What the journal keeps of a deferred call: enough for ``replay`` after a crash."""


_reader: JournalReader | None = None


def register_reader(reader: JournalReader) -> None:
    """Capture's reading of the raw records its calls journal (set once, at import)."""
    global _reader
    _reader = reader


def replay(event_id: str, record: Mapping[str, Any]) -> UsageEvent:
    """The event of a raw call record read back from the journal."""
    if _reader is None:
        raise LookupError("no reader for journalled calls: payi_notebook.capture is not loaded")
    return _reader(event_id, record)
