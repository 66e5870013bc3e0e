"""Spend shown while a cell runs: its badge appears and updates under the running cell.

One daemon thread per shell ticks every ``INTERVAL`` seconds (the front end is never sent
more than that) while a tracked cell runs. Once the cell has made a call and run for an
interval, its badge is displayed and then re-rendered in place whenever its text changes:
calls, tokens, spend, the budget bar with its thresholds, and the spend rate. At the end of
the cell the final badge replaces it in the same place (``BadgeBoard.show(handle=...)``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..widgets.style import ERROR, MUTED, OK, TEXT, TRACK, esc
from .reservation import BudgetState

log = logging.getLogger(__name__)

INTERVAL = 0.5
SHARE = 20  # the ticker spends at most 1/SHARE of its time rendering (cells with many thousand calls)
WARN = "#bf8700"


class BudgetLine:
    """The budget part of a badge: spend of budget, a bar with threshold ticks, the spend rate."""

    def __init__(self, state: BudgetState | None, spent: float | None = None, elapsed: float | None = None) -> None:
        self.state = state
        self.spent = state.spent if state is not None else spent
        self.elapsed = elapsed

    def _rate(self) -> str:
        if self.state is not None and self.state.rate_per_min:
            return f"${self.state.rate_per_min:.4f}/min"
        if self.spent and self.elapsed and self.elapsed > INTERVAL:
            return f"${self.spent / self.elapsed * 60:.4f}/min"
        return ""

    def text(self) -> str:
        s = self.state
        parts = []
        if s is not None and s.budget is not None:
            passed = "".join(f", {t:.0%} passed" for t in s.crossed)
            parts.append(f"{s.label} ${s.spent:.4f} of ${s.budget:.4f} ({s.fraction:.0%}{passed})")
            if s.refused:
                parts.append(f"{s.refused} refused")
        rate = self._rate()
        if rate:
            parts.append(rate)
        return " · ".join(parts)

    def html(self) -> str:
        s = self.state
        parts = []
        if s is not None and s.budget is not None:
            share = min(s.fraction, 1.0)
            colour = ERROR if s.refused or share >= 1 else WARN if s.crossed else OK
            ticks = "".join(
                f'<div title="warns at {t:.0%}" style="position:absolute;left:{t * 100:.1f}%;top:-2px;width:2px;'
                f'height:12px;background:{TEXT}"></div>'
                for t in s.thresholds
            )
            bar = (
                f'<span class="payi-budget-bar" style="position:relative;display:inline-block;vertical-align:middle;'
                f'width:120px;height:8px;background:{TRACK};border-radius:4px">'
                f'<span style="display:block;width:{share * 100:.1f}%;height:8px;background:{colour};'
                f'border-radius:4px"></span>{ticks}</span>'
            )
            passed = f' <span style="color:{WARN}">{esc(", ".join(f"{t:.0%}" for t in s.crossed))} passed</span>' if s.crossed else ""
            refused = f' <span style="color:{ERROR}">{s.refused} refused</span>' if s.refused else ""
            parts.append(f"{esc(s.label)} {bar} <b>${s.spent:.4f}</b> of ${s.budget:.4f}{passed}{refused}")
        rate = self._rate()
        if rate:
            parts.append(f'<span style="color:{MUTED}">{esc(rate)}</span>')
        return " · ".join(parts)


class LiveSpend:
    """Shows and updates the running cell's badge from a ticker thread."""

    def __init__(self, render: Callable[[Any, float], Any], display: Callable[[Any], Any]) -> None:
        self._render = render  # (scope, elapsed) -> a badge
        self._display = display  # badge -> a display handle
        self._lock = threading.Lock()
        self._scope: Any = None
        self._started = 0.0
        self._handle: Any = None
        self._shown = ""
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, scope: Any) -> None:
        """A tracked cell begins."""
        with self._lock:
            self._scope, self._started, self._handle, self._shown = scope, time.monotonic(), None, ""
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="payi-live-spend", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self, scope: Any) -> Any:
        """The cell ended: the handle of its live badge (None if none was shown)."""
        with self._lock:
            if self._scope is not scope:
                return None
            handle, self._scope, self._handle = self._handle, None, None
            return handle

    def _run(self) -> None:
        pause = INTERVAL
        while True:
            self._wake.wait()
            time.sleep(pause)
            with self._lock:
                scope, started, handle, shown = self._scope, self._started, self._handle, self._shown
            if scope is None:
                self._wake.clear()
                continue
            if not scope.refs and not (scope.budget is not None and scope.budget.state().calls):
                continue
            try:
                began = time.monotonic()
                badge = self._render(scope, began - started)
                text = repr(badge)
                pause = max(INTERVAL, SHARE * (time.monotonic() - began))  # a big cell's totals cost: back off
                if text == shown:
                    continue
                with self._lock:
                    if self._scope is not scope:
                        continue
                    if handle is None:
                        self._handle = self._display(badge)
                    else:
                        handle.update(badge)
                    self._shown = text
            except Exception as exc:  # a display problem never touches the cell
                log.warning("payi_notebook: updating the live budget badge failed: %s", exc)
                continue
