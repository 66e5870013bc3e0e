"""``%payi status``: where calls go, what is pending, and what went wrong — text and HTML."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .delivery import FlusherStatus


@dataclass(frozen=True)
class StatusReport:
    """The session's state: where calls go, how capture is set up, and delivery (the flusher's)."""

    endpoint_kind: str
    endpoint_url: str
    mode: str
    hooked: tuple[str, ...]
    rows: int
    delivery: FlusherStatus
    problems: tuple[tuple[float, str], ...] = ()

    def lines(self) -> list[tuple[str, str]]:
        d = self.delivery
        rows = [
            ("endpoint", f"{self.endpoint_kind} at {self.endpoint_url}"),
            ("mode", self.mode),
            ("capture", ", ".join(self.hooked) or "not installed"),
            ("ledger", f"{self.rows} calls"),
            (
                "delivery",
                f"{d.pending + d.in_flight} pending, {d.sent} sent, {d.failed} failed"
                + (f", {d.retries} retries" if d.retries else "")
                + (f", {d.recovered} recovered from a previous session" if d.recovered else "")
                + (f", {d.awaiting_cost} awaiting Pay-i cost" if d.awaiting_cost else ""),
            ),
        ]
        if d.last_error:
            rows.append(("last error", d.last_error))
        if d.unknown_models:
            models = ", ".join(f"{m} ({n})" for m, n in sorted(d.unknown_models.items()))
            rows.append(("warning", f"no local price for {models}: est_cost_usd is NaN"))
        if d.note:
            rows.append(("note", d.note))
        if d.journal is not None:
            rows += d.journal.rows()
        for when, message in self.problems[-5:]:
            rows.append(("problem", f"{time.strftime('%H:%M:%S', time.localtime(when))} {message}"))
        return rows

    def __repr__(self) -> str:
        width = max(len(k) for k, _ in self.lines())
        return "\n".join(f"{k.rjust(width)}: {v}" for k, v in self.lines())

    def _repr_html_(self) -> str:
        body = "".join(
            f'<tr><th style="text-align:right;padding-right:8px">{html.escape(k)}</th>'
            f'<td style="text-align:left">{html.escape(v)}</td></tr>'
            for k, v in self.lines()
        )
        return f'<table class="payi-status" style="font-size:12px">{body}</table>'
