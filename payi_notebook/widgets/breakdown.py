"""``CostBreakdown``: where the money went, by model, cell, use case, user, limit, ...

A dropdown picks the grouping, a toggle the metric (cost, or tokens split into input,
cached and output), a bar chart shows the groups and a line the cumulative cost over time.
The charts are our own SVG (``svg``) in plain HTML widgets: no plotly.js reaches the page,
a breakdown is a few kB on the wire, and the same picture is the static twin that exports
and GitHub show. Displayed, it is three outputs (controls and totals table, bars, timeline)
so that each chart's twin is an image. It reads only the columns it needs and aggregates
them (``aggregate.compute``), so it costs about the same for a million rows as for a
hundred. It follows the ledger: a change schedules one refresh on a timer thread (at most
``1 / interval`` per second); the subscription callback itself does no work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from .. import current
from ..ledger import Ledger
from . import aggregate, svg
from .aggregate import GROUPS, METRICS, Breakdown, group_label
from .style import (
    MUTED,
    NO_MATH,
    SERIES_COLOURS,
    TABLE,
    TRACK,
    box,
    cost_text,
    count,
    esc,
    money,
    muted,
    plural,
)
from .view import Snapshot, close_tree

TOKEN_SERIES = (("input_tokens", "input"), ("cached_tokens", "cached input"), ("output_tokens", "output"))


def _chart(markup: str) -> str:
    return f'<div class="payi-chart-box {NO_MATH}" style="overflow-x:auto">{markup}</div>'


class CostBreakdown(Snapshot, w.VBox):
    """Cost (or tokens) per group, live. ``CostBreakdown(ledger=None, by="model", metric="cost")``.

    ``by``: model, cell, use case, user, account, limit, provider, status, mode, operation
    (or the ledger column, e.g. ``use_case_name``). ``top`` groups are drawn, the rest merged.
    ``interval``: least seconds between live refreshes. ``close()`` stops following the ledger.
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        by: str = "model",
        metric: str = "cost",
        top: int = 15,
        live: bool = True,
        interval: float = 0.25,
    ) -> None:
        self._timer_lock = threading.Lock()  # scheduling only: never held while drawing
        self._timer: threading.Timer | None = None
        self._closed = False
        self._unsubscribe: Callable[[], None] | None = None
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if not isinstance(top, int) or top < 2:
            raise ValueError(f"top must be an integer >= 2, got {top!r}")
        by = group_label(by)
        if ledger is None:
            ledger = current.session().ledger
        self.ledger = ledger
        self.top = top
        self.interval = float(interval)
        self.breakdown: Breakdown | None = None
        self.refreshes = 0
        self._lock = threading.RLock()  # one refresh or redraw at a time
        self.group_by = w.Dropdown(
            options=list(GROUPS), value=by, description="group by", layout=w.Layout(width="220px")
        )
        self.metric = w.ToggleButtons(options=list(METRICS), value=metric, style={"button_width": "64px"})
        self.caption = w.HTML()
        self.bars = w.HTML()
        self.timeline = w.HTML()
        self.bars.add_class("payi-bars")
        self.timeline.add_class("payi-timeline")
        self.svgs = ("", "")  # (bars, timeline) as last drawn
        self.plotted: dict[str, list[Any]] = {}  # what the bars show: "labels" and one list per series
        controls = w.HBox([self.group_by, self.metric], layout=w.Layout(align_items="center"))
        self.head = w.VBox([controls, self.caption])
        self.head.add_class("payi-breakdown")
        super().__init__(children=[self.head, self.bars, self.timeline])
        self.add_class("payi-breakdown")
        self.refresh()
        self.group_by.observe(self._on_control, "value")
        self.metric.observe(self._on_control, "value")
        self._unsubscribe = ledger.subscribe(self._changed) if live else None

    # -- updating --------------------------------------------------------------------------

    def refresh(self, force: bool = True) -> bool:
        """Recompute and redraw; with ``force=False`` only if the ledger or the grouping changed."""
        with self._lock:
            by, metric = self.group_by.value, self.metric.value
            current = self.breakdown
            if not force and current is not None and current.version == self.ledger.version and current.by == by:
                return False
            breakdown = aggregate.compute(self.ledger, by)
            self._draw(breakdown, metric)
            self.breakdown = breakdown  # after drawing: whoever sees it sees it drawn
            self.refreshes += 1
            return True

    def _on_control(self, change: dict[str, Any]) -> None:
        if change["owner"] is self.metric and self.breakdown is not None:
            with self._lock:
                self._draw(self.breakdown, self.metric.value)
        else:
            self.refresh()

    def _changed(self) -> None:
        """Ledger subscription: O(1), on the caller's thread; one timer per burst of changes."""
        if self._timer is not None or self._closed:
            return
        with self._timer_lock:
            if self._timer is None and not self._closed:
                self._timer = threading.Timer(self.interval, self._tick)
                self._timer.daemon = True
                self._timer.start()

    def _tick(self) -> None:
        started = time.monotonic()
        with self._timer_lock:
            self._timer = None  # changes from now on schedule the next refresh
        if self._closed:
            return
        try:
            self.refresh(force=False)
        except Exception as exc:  # a failed refresh shows in the caption; the next change retries
            self.caption.value = box(f'<span style="color:#cf222e">refresh failed: {esc(exc)}</span>', "payi-caption")
        spent = time.monotonic() - started
        if spent > self.interval:  # slow refreshes stretch the interval instead of queueing up
            self.interval = min(spent, 5.0)

    def close(self) -> None:
        """Stop following the ledger and close the controls and charts."""
        with self._timer_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.retired()
        for child in self.children:
            close_tree(child)
        super().close()

    # -- drawing ---------------------------------------------------------------------------

    def _draw(self, breakdown: Breakdown, metric: str) -> None:
        table = breakdown.ordered(metric, self.top)
        labels = [str(label) for label in table.index]
        if metric == "cost":
            series = [("cost (USD)", table["cost_usd"].to_numpy())]
            notes = [cost_text(row.cost_usd, row.calls, row.unpriced) for row in table.itertuples()]
            fmt: Callable[[float], str] = money
        else:
            series = [(name, table[column].to_numpy()) for column, name in TOKEN_SERIES]
            notes, fmt = None, lambda v: f"{count(v)} tokens"
        self.plotted = {"labels": labels, **{name: [float(v) for v in values] for name, values in series}}
        bars = svg.bar_chart(labels, series, f"{metric} by {breakdown.by}", fmt, notes=notes)
        line = svg.step_chart(breakdown.times, breakdown.cumulative, "cumulative cost", money)
        self.svgs = (bars, line)
        self.bars.value = _chart(bars)
        self.timeline.value = _chart(line)
        self.caption.value = box(self._caption(breakdown), "payi-caption")
        self.update_static()

    @staticmethod
    def _caption(b: Breakdown) -> str:
        parts = [
            f"<b>{esc(cost_text(b.cost_usd, b.calls, b.source_calls.get('unknown', 0)))}</b>",
            esc(plural(b.calls, "call")),
            muted(f"cost: {b.source_caption()}"),
        ]
        if b.by == "limit":
            parts.append(muted("a call with several limits counts toward each"))
        return " · ".join(parts)

    # -- static views ----------------------------------------------------------------------

    def parts(self) -> list[tuple[Any, dict[str, str]]]:
        """Three outputs: controls over the totals table, the bars, the timeline (charts as SVG images)."""
        b = self.breakdown
        bars = line = "[chart: nothing computed yet]"
        if b is not None:
            plotted = self.plotted
            values = [(name, v) for name, v in plotted.items() if name != "labels"]
            rows = [
                f"{label}: " + " / ".join(f"{count(v[i]) if len(values) > 1 else money(v[i])}" for _, v in values)
                for i, label in enumerate(plotted.get("labels", []))
            ]
            bars = f"[chart: {self.metric.value} by {b.by}] " + "; ".join(rows)
            line = f"[chart: cumulative cost] {cost_text(b.cost_usd, b.calls, b.source_calls.get('unknown', 0))}"
            line += f" over {plural(b.calls, 'call')}"
        return [
            (self.head, {"text/plain": self.text(), "text/html": self.html(images=False)}),
            (self.bars, {"text/plain": bars, "image/svg+xml": self.svgs[0]}),
            (self.timeline, {"text/plain": line, "image/svg+xml": self.svgs[1]}),
        ]

    def html(self, images: bool = True) -> str:
        """Title, totals and one row per group; with ``images`` the two charts as ``<img>`` too."""
        b = self.breakdown
        if b is None:
            return box(muted("cost breakdown: nothing computed yet"), "payi-breakdown-static")
        metric = self.metric.value
        table = b.ordered(metric, self.top)
        key = "cost_usd" if metric == "cost" else "tokens"
        peak = float(table[key].max()) if len(table) else 0.0
        head = "".join(
            f'<th style="text-align:{align};padding:2px 8px;color:{MUTED};font-weight:500">{name}</th>'
            for name, align in ((esc(b.by), "left"), ("calls", "right"), ("cost", "right"),
                                ("input / cached / output tokens", "right"), ("", "left"))
        )  # fmt: skip
        rows = []
        for label, row in table.iterrows():
            share = float(row[key]) / peak * 100 if peak > 0 else 0.0
            bar = (
                f'<div style="width:160px;height:8px;background:{TRACK};border-radius:4px">'
                f'<div style="width:{share:.1f}%;height:8px;background:{SERIES_COLOURS[0]};border-radius:4px">'
                "</div></div>"
            )
            tokens = f"{count(row.input_tokens)} / {count(row.cached_tokens)} / {count(row.output_tokens)}"
            cost = cost_text(row.cost_usd, row.calls, row.unpriced)
            cells = ((esc(label), "left"), (esc(f"{int(row.calls):,}"), "right"), (esc(cost), "right"),
                     (esc(tokens), "right"), (bar, "left"))  # fmt: skip
            tds = "".join(f'<td style="text-align:{align};padding:2px 8px">{cell}</td>' for cell, align in cells)
            rows.append(f"<tr>{tds}</tr>")
        table_html = f'<table style="{TABLE}"><tr>{head}</tr>{"".join(rows)}</table>'
        title = f"<div><b>payi</b> · {esc(metric)} by {esc(b.by)} · {self._caption(b)}</div>"
        charts = ""
        if images and self.svgs[0]:
            charts = "".join(
                f'<div><img alt="{esc(alt)}" src="{svg.data_uri(picture)}"></div>'
                for alt, picture in zip((f"{metric} by {b.by}", "cumulative cost"), self.svgs)
            )
        return box(title + table_html + charts, "payi-breakdown-static")

    def text(self) -> str:
        b = self.breakdown
        if b is None:
            return "CostBreakdown (nothing computed yet)"
        metric = self.metric.value
        table = b.ordered(metric, self.top)
        width = max([len(b.by), *(len(str(label)) for label in table.index)])
        total = f"{cost_text(b.cost_usd, b.calls, b.source_calls.get('unknown', 0))} · {plural(b.calls, 'call')} · cost: {b.source_caption()}"
        lines = [f"payi · {metric} by {b.by} · {total}"]
        lines.append(f"  {b.by.ljust(width)}  {'calls':>9}  {'cost':>16}  {'in/cached/out tokens':>24}")
        for label, row in table.iterrows():
            tokens = f"{count(row.input_tokens)}/{count(row.cached_tokens)}/{count(row.output_tokens)}"
            cost = cost_text(row.cost_usd, row.calls, row.unpriced)
            lines.append(f"  {str(label).ljust(width)}  {int(row.calls):>9,}  {cost:>16}  {tokens:>24}")
        return "\n".join(lines)
