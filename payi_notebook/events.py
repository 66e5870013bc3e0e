"""The record of one captured provider call, as capture produces it.

Capture fills a ``UsageEvent`` on the request path; the ledger keeps it as a row and the
flusher renders it into a Pay-i ingest body. Status values follow the ledger contract.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .context import Context
from .units import TokenCounts, Units

Status = Literal["pending", "sent", "failed", "proxied", "blocked", "refused_budget"]
Mode = Literal["telemetry", "proxy"]
STATUSES: tuple[str, ...] = ("pending", "sent", "failed", "proxied", "blocked", "refused_budget")


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def _new_id_prefix() -> None:
    """A forked child draws its own prefix: its counter would otherwise repeat the parent's ids."""
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX = os.urandom(8).hex()
    _ID_COUNTER = itertools.count(1)


os.register_at_fork(after_in_child=_new_id_prefix)


def new_event_id() -> str:
    """A unique 32-hex-digit id (also the spool key): a random per-process prefix and a counter.

    Cheaper than ``uuid4()`` on the request path (no system call per event).
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


@dataclass(slots=True, eq=False)
class UsageEvent:
    """One provider call. Secrets never enter it: headers are filtered before they get here."""

    provider: str  # "openai" | "anthropic" | "azure_openai" | "azure_anthropic" | "google" | "vertex"
    category: str  # Pay-i category, e.g. "system.openai"
    operation: str  # "chat" | "responses" | "embeddings" | "messages" | "generate"
    resource: str | None = None  # the model as the caller asked for it
    mode: Mode = "telemetry"
    streaming: bool = False
    event_id: str = field(default_factory=new_event_id)
    timestamp: float = field(default_factory=time.time)  # epoch seconds, just before the call
    provider_response_id: str | None = None
    units: Units = field(default_factory=dict)
    tokens: TokenCounts = TokenCounts()
    latency_ms: float | None = None
    ttft_ms: float | None = None
    http_status: int | None = None
    status: Status = "pending"
    error: str | None = None
    partial: bool = False  # a stream closed before its usage arrived in full
    input_estimated: bool = False  # its input tokens are estimated from the request (no usage came)
    context: Context = Context()
    execution_count: int | None = None
    cell_id: str | None = None
    provider_uri: str | None = None
    worker: str | None = None  # the Dask worker that made the call; None for this process's own calls
    deployment: str | None = None  # Azure OpenAI deployment name (the resource is the model it serves)
    request_json: str | None = None  # only when prompt/response logging is on
    response_json: str | list[str] | None = None
    response_headers: list[dict[str, str]] | None = None
    xproxy_result: dict[str, Any] | None = None
    est_cost_usd: float | None = None
    payi_cost_usd: float | None = None


