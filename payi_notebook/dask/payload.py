"""What crosses from the notebook to Dask workers and back: plain, msgpack-able dicts.

Two kinds of message, both free of secrets:

- a scope *payload*, attached to every task submitted inside a tracking scope as the Dask
  annotation ``payi`` (it travels in the task graph, so it holds the attribution only:
  the context, the cell's id and execution count, and a token naming the notebook's scope);
- a *row*: one ``UsageEvent`` as the worker's ledger holds it, without prompt, response or
  headers, sent back to the notebook through Dask's event log.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from ..context import Context
from ..events import UsageEvent
from ..tracking import TrackingScope
from ..units import TokenCounts

ANNOTATION = "payi"
TOPIC = "payi_notebook.rows"

_payloads: weakref.WeakKeyDictionary[TrackingScope, dict[str, Any]] = weakref.WeakKeyDictionary()


def scope_payload(scope: TrackingScope) -> dict[str, Any]:
    """The annotation for tasks submitted in ``scope`` (made once per scope)."""
    payload = _payloads.get(scope)
    if payload is None:
        ctx = scope.context
        payload = {
            "token": uuid.uuid4().hex,
            "context": ctx.to_json(),
            "execution_count": scope.execution_count,
            "cell_id": scope.cell_id,
            "quiet": scope.quiet,
        }
        _payloads[scope] = payload
    return payload


def scope_from_payload(payload: dict[str, Any], worker: str | None) -> TrackingScope:
    """The worker-side scope of tasks carrying ``payload``."""
    return TrackingScope(
        context=Context.from_json(payload.get("context") or {}),
        execution_count=payload.get("execution_count"),
        cell_id=payload.get("cell_id"),
        quiet=bool(payload.get("quiet")),
        worker=worker,
    )


_ROW_FIELDS = (
    "provider", "category", "operation", "resource", "mode", "streaming", "event_id", "timestamp",
    "provider_response_id", "latency_ms", "ttft_ms", "http_status", "status", "error", "partial",
    "execution_count", "cell_id", "provider_uri", "xproxy_result", "est_cost_usd", "payi_cost_usd", "deployment",
)  # fmt: skip


def row_message(event: UsageEvent, token: str | None) -> dict[str, Any]:
    """One worker row for the notebook: no bodies, no headers (they stay with the worker's journal)."""
    row = {name: getattr(event, name) for name in _ROW_FIELDS}
    row["units"] = {name: dict(sides) for name, sides in event.units.items()}
    row["tokens"] = list(event.tokens)
    row["context"] = event.context.to_json()
    row["scope"] = token
    return row


def event_from_row(row: dict[str, Any], worker: str | None) -> UsageEvent:
    """The notebook's copy of a worker's row."""
    fields: dict[str, Any] = {name: row.get(name) for name in _ROW_FIELDS}
    fields["streaming"] = bool(fields["streaming"])
    fields["partial"] = bool(fields["partial"])
    return UsageEvent(
        **fields,
        units={name: dict(sides) for name, sides in (row.get("units") or {}).items()},
        tokens=TokenCounts(*(int(n) for n in row.get("tokens") or ())),
        context=Context.from_json(row.get("context") or {}),
        worker=worker,
    )
