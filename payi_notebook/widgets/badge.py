"""The one-line summary under a tracked cell, updated in place as Pay-i answers.

Shown with a ``display_id``; a background refresher re-renders live badges when the ledger
changes (debounced) and retires each once all its rows are final. It renders as HTML in
notebooks and as plain text anywhere else (nbconvert, terminals).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..ledger import Ledger, RowRef, Totals
from .style import (
    FONT,
    MUTED,
    NO_MATH,
    SOURCE_NAMES,
    STATUS_COLOURS,
    esc,
    money,
    plural,
    state_chip,
    unpriced_reason,
)

log = logging.getLogger(__name__)
COST_WAIT_S = 60.0  # after the last row settles, how long a badge waits for Pay-i costs (bulk lookups)


class Badge:
    """A snapshot of a cell's totals with text and HTML renderings.

    Calls, input/output tokens (cached shown apart), cost marked ``(Pay-i)`` or
    ``(estimated)``, delivery state counts and one chip per limit in its state's colour.
    """

    def __init__(self, totals: Totals, label: str = "payi", note: str | None = None, extra: Any = None) -> None:
        self.totals = totals
        self.label = label
        self.note = note  # degraded durability (journal off or disk full), shown after the line
        self.extra = extra  # more to say (the budget line): an object with ``text()`` and ``html()``

    def _tokens(self) -> str:
        t = self.totals
        cached = f" ({t.cache_read_tokens:,} cached)" if t.cache_read_tokens else ""
        return f"{t.input_tokens:,} in{cached} / {t.output_tokens:,} out tokens"

    def _cost(self) -> str:
        """The money, or ``unpriced`` when no call could be priced (never a bare $0)."""
        t = self.totals
        return "unpriced" if t.calls and (t.cost_source == "unknown" or math.isnan(t.cost_usd)) else money(t.cost_usd)

    def _source(self) -> str:
        """Whose cost this is (``Pay-i``, ``estimated``, ...), and why some calls have none."""
        t = self.totals
        reason = unpriced_reason(t.unpriced_models)
        if t.calls and self._cost() == "unpriced":
            return reason
        unpriced = f", {t.unpriced} unpriced: {reason}" if t.unpriced else ""
        return SOURCE_NAMES.get(t.cost_source, t.cost_source) + unpriced

    def _statuses(self) -> list[tuple[str, str]]:
        """(status, "2 sent") pairs, then errors."""
        t = self.totals
        parts = [(status, f"{n} {status}") for status, n in sorted(t.statuses.items()) if n]
        if t.errors:
            parts.append(("failed", plural(t.errors, "error")))
        return parts

    def text(self) -> str:
        t = self.totals
        statuses = ", ".join(text for _, text in self._statuses())
        parts = [plural(t.calls, "call"), self._tokens(), f"{self._cost()} ({self._source()})", statuses]
        line = f"{self.label} · " + " · ".join(p for p in parts if p)
        limits = "; ".join(f"{lid}: {state}" for lid, state in sorted(t.limit_states.items()))
        line = f"{line} · limits {limits}" if limits else line
        extra = self.extra.text() if self.extra is not None else ""
        line = f"{line} · {extra}" if extra else line
        return f"{line} · ⚠ {self.note}" if self.note else line

    def html(self) -> str:
        t = self.totals
        source = t.cost_source if t.cost_source in ("payi", "estimate") else "unknown"
        cost_title = {"payi": "cost reported by Pay-i", "estimate": "local estimate until Pay-i answers"}.get(
            source, "some or all calls have no known price"
        )
        statuses = ", ".join(
            f'<span style="color:{STATUS_COLOURS.get(status, MUTED)}">{esc(text)}</span>'
            for status, text in self._statuses()
        )
        chips = "".join(state_chip(state, f"{lid}: {state}") for lid, state in sorted(t.limit_states.items()))
        parts = [
            f"<b>{esc(self.label)}</b>",
            esc(plural(t.calls, "call")),
            esc(self._tokens()),
            f'<span title="{esc(cost_title)}"><b>{esc(self._cost())}</b> '
            f'<span style="color:{MUTED}">({esc(self._source())})</span></span>',
        ]
        if statuses:
            parts.append(statuses)
        if self.extra is not None and (extra := self.extra.html()):
            parts.append(extra)
        return (
            f'<div class="payi-badge {NO_MATH}" '
            f'style="font-family:{FONT};font-size:12px;color:{MUTED};line-height:20px">'
            + " · ".join(parts)
            + (f" {chips}" if chips else "")
            + (f' · <span class="payi-degraded" style="color:#b45309">⚠ {esc(self.note)}</span>' if self.note else "")
            + "</div>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()


class BadgeBoard:
    """Live badges: re-rendered after ledger changes, retired once every row is final."""

    def __init__(
        self, ledger: Ledger, display: Callable[[Badge], Any], delay: float = 0.25, note: Callable[[], str | None] | None = None
    ) -> None:
        self._ledger = ledger
        self._display = display
        self._note = note or (lambda: None)
        self._delay = delay
        self._live: list[_Live] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._unsubscribe = ledger.subscribe(self._changed)

    def show(self, refs: Sequence[RowRef], extra: Callable[[], Any] | None = None, handle: Any = None) -> Badge:
        """Display a badge for these rows now (or update ``handle``); keep it live while any row is not final.

        ``extra()`` gives what else the badge says (a ``Badge`` extra), re-read on each refresh.
        """
        badge = Badge(self._ledger.totals(refs), note=self._note(), extra=extra() if extra is not None else None)
        if handle is not None:
            handle.update(badge)
        else:
            handle = self._display(badge)
        live = _Live(list(refs), handle, badge.text(), extra)
        if handle is not None and not live.final(badge.totals):
            with self._lock:
                self._live.append(live)
            self._changed()  # a change that landed after the totals were read found no live badge to refresh
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
            badge = Badge(self._ledger.totals(item.refs), note=self._note(), extra=item.extra() if item.extra is not None else None)
            text = badge.text()
            if text != item.shown:
                try:
                    item.handle.update(badge)
                except Exception as exc:  # a display failure never breaks anything else
                    log.warning("payi_notebook: updating a live cost badge failed: %s", exc)
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
    extra: Callable[[], Any] | None = None
    settled_at: float | None = None

    def final(self, totals: Totals) -> bool:
        if totals.statuses.get("pending"):
            return False
        if totals.cost_source in ("payi", "unknown"):
            return True
        now = time.monotonic()
        self.settled_at = self.settled_at or now
        return now - self.settled_at > COST_WAIT_S
