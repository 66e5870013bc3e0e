"""``%payi status``: where calls go, what is pending, and what went wrong — text and HTML."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StatusReport:
    endpoint_kind: str
    endpoint_url: str
    mode: str
    hooked: tuple[str, ...]
    rows: int
    pending: int
    in_flight: int
    sent: int
    failed: int
    retries: int
    recovered: int
    awaiting_cost: int
    last_error: str | None = None
    unknown_models: dict[str, int] = field(default_factory=dict)
    problems: tuple[tuple[float, str], ...] = ()
    note: str | None = None

    def lines(self) -> list[tuple[str, str]]:
        rows = [
            ("endpoint", f"{self.endpoint_kind} at {self.endpoint_url}"),
            ("mode", self.mode),
            ("capture", ", ".join(self.hooked) or "not installed"),
            ("ledger", f"{self.rows} calls"),
            (
                "delivery",
                f"{self.pending + self.in_flight} pending, {self.sent} sent, {self.failed} failed"
                + (f", {self.retries} retries" if self.retries else "")
                + (f", {self.recovered} recovered from a previous session" if self.recovered else "")
                + (f", {self.awaiting_cost} awaiting Pay-i cost" if self.awaiting_cost else ""),
            ),
        ]
        if self.last_error:
            rows.append(("last error", self.last_error))
        if self.unknown_models:
            models = ", ".join(f"{m} ({n})" for m, n in sorted(self.unknown_models.items()))
            rows.append(("warning", f"no local price for {models}: est_cost_usd is NaN"))
        if self.note:
            rows.append(("note", self.note))
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
