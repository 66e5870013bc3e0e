"""The one-line summary under a tracked cell, updated in place as Pay-i answers.

Shown with a ``display_id``; a background refresher re-renders live badges when the ledger
changes (debounced) and retires each once all its rows are final. It renders as HTML in
notebooks and as plain text anywhere else (nbconvert, terminals).
"""

from __future__ import annotations

import html
import math
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from typing import Any

from ..ledger import Ledger, RowRef, Totals

COST_WAIT_S = 60.0  # after the last row settles, how long a badge waits for Pay-i costs (bulk lookups)
_STATE_COLOURS = {
    "ok": "#1a7f37",
    "exceeded": "#9a6700",
    "overrun": "#cf222e",
    "blocked": "#cf222e",
    "blocked_external": "#8250df",
    "failed": "#6e7781",
}


def format_cost(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.4f}"


class Badge:
    """A snapshot of a cell's totals with text and HTML renderings."""

    def __init__(self, totals: Totals, label: str = "payi") -> None:
        self.totals = totals
        self.label = label

    def _parts(self) -> list[str]:
        t = self.totals
        calls = f"{t.calls} call" + ("" if t.calls == 1 else "s")
        tokens = f"{t.input_tokens:,} in / {t.output_tokens:,} out tokens"
        source = {"payi": "Pay-i", "estimate": "estimated", "mixed": "Pay-i + estimated", "unknown": "unpriced"}
        cost = f"{format_cost(t.cost_usd)} ({source.get(t.cost_source, t.cost_source)})"
        states = ", ".join(f"{n} {s}" for s, n in sorted(t.statuses.items()) if n)
        return [calls, tokens, cost, states]

    def text(self) -> str:
        parts = self._parts()
        limits = "; ".join(f"{lid}: {state}" for lid, state in sorted(self.totals.limit_states.items()))
        line = f"{self.label} · " + " · ".join(p for p in parts if p)
        return f"{line} · limits {limits}" if limits else line

    def html(self) -> str:
        chips = "".join(
            f'<span style="border:1px solid {_STATE_COLOURS.get(state, "#6e7781")};color:{_STATE_COLOURS.get(state, "#6e7781")};'
            f'border-radius:8px;padding:0 6px;margin-left:4px">{html.escape(lid)}: {html.escape(state)}</span>'
            for lid, state in sorted(self.totals.limit_states.items())
        )
        body = " · ".join(html.escape(p) for p in self._parts() if p)
        return (
            '<div class="payi-badge" style="font-family:monospace;font-size:12px;color:#57606a">'
            f"<b>{html.escape(self.label)}</b> · {body}{chips}</div>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()


class BadgeBoard:
    """Live badges: re-rendered after ledger changes, retired once every row is final."""

    def __init__(self, ledger: Ledger, display: Callable[[Badge], Any], delay: float = 0.25) -> None:
        self._ledger = ledger
        self._display = display
        self._delay = delay
        self._live: list[_Live] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._unsubscribe = ledger.subscribe(self._changed)

    def show(self, refs: Sequence[RowRef]) -> Badge:
        """Display a badge for these rows now; keep it live while any row is not final."""
        badge = Badge(self._ledger.totals(refs))
        handle = self._display(badge)
        live = _Live(list(refs), handle, badge.text())
        if handle is not None and not live.final(badge.totals):
            with self._lock:
                self._live.append(live)
        return badge

    def _changed(self) -> None:
        with self._lock:
            if not self._live or self._timer is not None:
                return
            self._timer = threading.Timer(self._delay, self.refresh)
            self._timer.daemon = True
            self._timer.start()

    def refresh(self) -> None:
        """Re-render every live badge whose text changed; drop the ones that are final."""
        with self._lock:
            self._timer = None
            live, self._live = self._live, []
        keep = []
        for item in live:
            badge = Badge(self._ledger.totals(item.refs))
            text = badge.text()
            if text != item.shown:
                try:
                    item.handle.update(badge)
                except Exception:  # a display failure never breaks anything else
                    continue
                item.shown = text
            if not item.final(badge.totals):
                keep.append(item)
        with self._lock:
            self._live = keep + self._live

    def close(self) -> None:
        self._unsubscribe()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._live.clear()


@dataclass(eq=False)
class _Live:
    """A displayed badge still waiting for Pay-i: for pending rows, then for their Pay-i cost."""

    refs: list[RowRef]
    handle: Any
    shown: str
    settled_at: float | None = None

    def final(self, totals: Totals) -> bool:
        if totals.statuses.get("pending"):
            return False
        if totals.cost_source in ("payi", "unknown"):
            return True
        now = time.monotonic()
        self.settled_at = self.settled_at or now
        return now - self.settled_at > COST_WAIT_S
