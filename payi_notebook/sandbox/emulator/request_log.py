"""What the emulator received: a bounded log tests read to assert on server-side behaviour.

``app.state.requests`` is a ``RequestLog``; each entry is a ``RequestRecord`` with the
path, the model (fault suffix removed), the parsed JSON body and the headers without
credentials, plus the status the emulator answered with.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})
_CREDENTIAL_MARKERS = ("api-key", "apikey", "secret", "token", "password")


def without_credentials(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers (lower-cased names) minus anything that carries a key, token or cookie."""
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in CREDENTIAL_HEADERS or any(marker in lowered for marker in _CREDENTIAL_MARKERS):
            continue
        kept[lowered] = value
    return kept


@dataclass
class RequestRecord:
    """One request as received, and the status it got."""

    provider: str
    path: str
    headers: dict[str, str]
    request_id: str
    time: float = field(default_factory=time.time)
    model: str | None = None
    requested_model: str | None = None
    body: Any = None
    stream: bool = False
    faults: str = ""
    status: int | None = None


class RequestLog:
    """The most recent requests (oldest dropped first) and a running total of all of them."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self.total = 0

    def add(self, record: RequestRecord) -> RequestRecord:
        self._records.append(record)
        self.total += 1
        return record

    def clear(self) -> None:
        """Forget the records and reset ``total``."""
        self._records.clear()
        self.total = 0

    @property
    def last(self) -> RequestRecord | None:
        return self._records[-1] if self._records else None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(list(self._records))

    def __getitem__(self, index: int) -> RequestRecord:
        return self._records[index]
