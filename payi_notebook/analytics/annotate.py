"""``pn.annotate(row, verdict="good")``: request properties set after the call ran (an evaluation's verdict).

The row is found in the ledger (a row of ``pn.ledger().df``, or its ``event_id``,
``payi_request_id`` or ``provider_response_id``). Pay-i is told by request id when the row has
one, else by category + provider response id (bulk-sent rows). A row still pending is sent
first (``pn.flush``), since Pay-i can only annotate what it has. The ledger's ``properties``
then show the change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from . import routes
from .calls import AnalyticsError, ClientFactory, call
from .outcomes import Notes

LOOKUP_COLUMNS = ("event_id", "payi_request_id", "provider_response_id")
FLUSH_TIMEOUT = 30.0


def _changes(properties: Mapping[str, Any]) -> dict[str, str | None]:
    if not properties:
        raise AnalyticsError('annotate needs at least one property, e.g. pn.annotate(row, verdict="good")')
    try:
        return routes.properties(properties)
    except ValueError as exc:
        raise AnalyticsError(str(exc)) from None


def find_row(df: pd.DataFrame, target: Any) -> pd.Series:
    """The ledger row ``target`` names (a row, or one of its ids), else ``AnalyticsError``."""
    if isinstance(target, pd.Series):
        event_id = target.get("event_id")
        if not isinstance(event_id, str):
            raise AnalyticsError("annotate: that row has no event_id; pass a row of pn.ledger().df")
        target = event_id
    if not isinstance(target, str) or not target:
        raise AnalyticsError(
            f"annotate: pass a row of pn.ledger().df or a row's event/request/response id, got {target!r}"
        )
    for column in LOOKUP_COLUMNS:
        hits = df.index[df[column] == target]
        if len(hits):
            return df.loc[hits[-1]]
    raise AnalyticsError(f"annotate: no ledger row has the id {target!r} (checked {', '.join(LOOKUP_COLUMNS)})")


class Annotator:
    """Sets properties at Pay-i and in the ledger view."""

    def __init__(
        self, client: ClientFactory, frame: Callable[[], pd.DataFrame], flush: Callable[[float], Any], notes: Notes
    ) -> None:
        self._client = client
        self._frame = frame
        self._flush = flush
        self.notes = notes

    def __call__(self, target: Any, /, **properties: Any) -> dict[str, str]:
        """Set ``properties`` (``None`` removes one) on the request ``target`` names; returns its properties now."""
        changes = _changes(properties)
        row = find_row(self._frame(), target)
        if row["status"] == "pending":
            self._flush(FLUSH_TIMEOUT)
            row = find_row(self._frame(), row["event_id"])
        status = row["status"]
        if status == "pending":
            raise AnalyticsError(
                "annotate: the call has not reached Pay-i yet (see %payi status); try again once it is sent"
            )
        if status == "failed":
            raise AnalyticsError(
                f"annotate: Pay-i refused this call, so it holds no request to annotate ({row['error']})"
            )
        request_id = row["payi_request_id"]
        if isinstance(request_id, str) and request_id:
            plan = routes.request_properties(request_id, changes)
        else:
            plan = routes.provider_properties(str(row["category"]), str(row["provider_response_id"]), changes)
        call(self._client, f"set properties on request {row['event_id']}", lambda c: c.run(plan))
        base = row["properties"] if isinstance(row["properties"], Mapping) else {}
        return self.notes.add(row["event_id"], base, changes)
