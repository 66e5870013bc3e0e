"""``BudgetPanel``: every Pay-i limit with its spend, and the controls to manage them.

Each limit is a row: name, id, type, state, a bar of spend against max with the risk
threshold marked, and Set max / Reset / Delete (Delete asks to confirm). A form creates
limits. Every action goes through ``pn.limits`` and then re-reads the list; whatever
goes wrong (a Pay-i refusal, Pay-i unreachable, a bad value) shows as a red line inside
the panel, never as a traceback. After each tracked cell the panel re-reads the limits on
a background thread, once the cell's calls have reached Pay-i, so the cell is not held up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from .. import current
from ..limits import Limit, Limits
from .style import MONO, MUTED, STATE_COLOURS, TEXT, TRACK, box, chip, esc, message, money, muted, plural, state_chip
from .view import Snapshot, close_tree

DELIVERY_WAIT_S = 5.0  # after a cell, how long to wait for its calls to reach Pay-i before re-reading
_TYPE_COLOURS = {"allow": "#4c78a8", "block": "#8250df"}


def spend_bar(limit: Limit, width: int = 220) -> str:
    """Spend against max as a small bar in the state's colour, the risk threshold as a tick."""
    share = min(limit.spent / limit.max, 1.0) if limit.max > 0 else 1.0
    colour = STATE_COLOURS.get(limit.state, MUTED)
    tick = ""
    if limit.threshold is not None and limit.threshold < 1:
        tick = (
            f'<div title="risk threshold {limit.threshold:.0%} = {esc(money(limit.max * limit.threshold))}" '
            f'style="position:absolute;left:{limit.threshold * 100:.1f}%;top:-3px;width:2px;height:14px;'
            f'background:{TEXT}"></div>'
        )
    return (
        f'<div class="payi-bar" style="position:relative;display:inline-block;vertical-align:middle;width:{width}px;'
        f'height:8px;background:{TRACK};border-radius:4px">'
        f'<div style="width:{share * 100:.1f}%;height:8px;background:{colour};border-radius:4px"></div>{tick}</div>'
    )


def limit_html(limit: Limit) -> str:
    """One limit's summary line (every name and id escaped)."""
    share = f" ({limit.spent / limit.max:.0%})" if limit.max > 0 else ""
    threshold = f" · risk at {limit.threshold:.0%}" if limit.threshold is not None and limit.threshold < 1 else ""
    requests = limit.requests.get("total", 0)
    return (
        f'<div style="display:flex;align-items:center;gap:8px;flex-wrap:wrap">'
        f'<b style="min-width:120px">{esc(limit.limit_name)}</b>'
        f'<span style="font-family:{MONO};font-size:11px;color:{MUTED}">{esc(limit.limit_id)}</span>'
        f"{chip(limit.limit_type, _TYPE_COLOURS.get(limit.limit_type, MUTED))}{state_chip(limit.state)}"
        f"{spend_bar(limit)}"
        f"<span>{esc(money(limit.spent))} of {esc(money(limit.max))}{esc(share)}</span>"
        f"{muted(plural(requests, 'request') + threshold)}</div>"
    )


def _button(width: int, hidden: bool = False) -> w.Layout:
    """A button that keeps its label whole in a tight row."""
    return w.Layout(width=f"{width}px", min_width=f"{width}px", display="none" if hidden else None)


class _LimitRow:
    """The widgets of one limit's row; ``panel`` runs their actions."""

    def __init__(self, panel: BudgetPanel, limit: Limit) -> None:
        self.limit = limit
        self.info = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.max = w.FloatText(value=limit.max, step=1.0, layout=w.Layout(width="90px"))
        self.set_max = w.Button(description="Set max", layout=_button(82), tooltip="change this limit's max (USD)")
        self.reset = w.Button(description="Reset", layout=_button(60), tooltip="set spend back to $0")
        self.delete = w.Button(description="Delete", layout=_button(64), tooltip="delete this limit")
        self.confirm = w.Button(description="Confirm delete", button_style="danger", layout=_button(116, hidden=True))
        self.cancel = w.Button(description="Cancel", layout=_button(64, hidden=True))
        limit_id = limit.limit_id
        self.set_max.on_click(lambda _: panel.set_max(limit_id, self.max.value))
        self.reset.on_click(lambda _: panel.reset(limit_id))
        self.delete.on_click(lambda _: self.ask(True))
        self.cancel.on_click(lambda _: self.ask(False))
        self.confirm.on_click(lambda _: panel.delete(limit_id))
        controls = [self.max, self.set_max, self.reset, self.delete, self.confirm, self.cancel]
        self.box = w.HBox([self.info, *controls], layout=w.Layout(align_items="center"))
        self.show(limit)

    def show(self, limit: Limit) -> None:
        if limit.max != self.limit.max:
            self.max.value = limit.max  # changed elsewhere; an unchanged max keeps what the user is typing
        self.limit = limit
        self.info.value = box(limit_html(limit), "payi-limit")

    def ask(self, confirming: bool) -> None:
        """Delete's confirm step: swap Delete for Confirm / Cancel, or back."""
        self.delete.layout.display = "none" if confirming else None
        self.confirm.layout.display = None if confirming else "none"
        self.cancel.layout.display = None if confirming else "none"

    def close(self) -> None:
        close_tree(self.box)


class BudgetPanel(Snapshot, w.VBox):
    """Pay-i limits, live: ``BudgetPanel(limits=None, session=None)`` (defaults: ``pn.limits``, the session).

    ``refresh()`` re-reads the list; ``create``/``set_max``/``reset``/``delete`` act through
    ``limits`` and report in ``message`` (shown in the panel). ``close()`` stops refreshing.
    """

    def __init__(self, limits: Limits | None = None, session: Any = None) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._rows: dict[str, _LimitRow] = {}
        self.session = session if session is not None else current.session()
        if limits is None:
            limits = self.session.limits
        self.api = limits
        self.limits: list[Limit] = []
        self.message: tuple[str, str] | None = None  # (kind, text): "error" | "done" | "info"
        self._background: threading.Thread | None = None
        self._again: list[Any] | None = None
        self.header = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=_button(90))
        self.refresh_button.on_click(lambda _: self._run("refresh", lambda: None, "limits re-read"))
        self.notice = w.HTML()
        self.rows = w.VBox()
        self._empty = w.HTML(box(muted("No limits yet: create one below."), "payi-empty"))
        self.new_name = w.Text(placeholder="name", layout=w.Layout(width="160px"))
        self.new_max = w.FloatText(value=10.0, step=1.0, description="max $", layout=w.Layout(width="150px"),
                                   style={"description_width": "initial"})  # fmt: skip
        self.new_type = w.ToggleButtons(
            options=["allow", "block"],
            style={"button_width": "56px"},
            tooltips=["track and report overruns", "block proxied calls past max"],
        )
        self.new_threshold = w.Text(placeholder="risk threshold, e.g. 0.8", layout=w.Layout(width="170px"))
        self.create_button = w.Button(description="Create limit", button_style="primary", layout=_button(104))
        self.create_button.on_click(lambda _: self._create_from_form())
        form = w.HBox(
            [self.new_name, self.new_max, self.new_type, self.new_threshold, self.create_button],
            layout=w.Layout(align_items="center", flex_flow="row wrap"),
        )
        top = w.HBox([self.header, self.refresh_button], layout=w.Layout(align_items="center"))
        super().__init__(children=[top, self.notice, self.rows, form], layout=w.Layout())
        self.add_class("payi-budget")
        self.refresh()
        self.session.cell_listeners.append(self._after_cell)

    # -- reading -------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Re-read every limit from Pay-i; on failure keep the last list and show why. True if it worked."""
        with self._lock:
            try:
                limits = self.api.all()
            except Exception as exc:
                self._say("error", f"could not read the limits: {exc}")
                return False
            self.limits = limits
            self._draw()
            return True

    def _draw(self) -> None:
        seen = {}
        for limit in self.limits:
            row = self._rows.get(limit.limit_id)
            if row is None:
                row = _LimitRow(self, limit)
            else:
                row.show(limit)
            seen[limit.limit_id] = row
        for limit_id, row in self._rows.items():
            if limit_id not in seen:
                row.close()
        self._rows = seen
        if seen:
            self.rows.children = [row.box for row in seen.values()]
        else:
            self.rows.children = [self._empty]
        self.header.value = box(self._summary_html(), "payi-budget-header")
        self.update_static()

    def _summary_html(self) -> str:
        states: dict[str, int] = {}
        for limit in self.limits:
            states[limit.state] = states.get(limit.state, 0) + 1
        chips = "".join(state_chip(state, f"{n} {state}") for state, n in sorted(states.items()))
        return f"<b>payi</b> · budgets · {esc(plural(len(self.limits), 'limit'))} {chips}"

    # -- acting --------------------------------------------------------------------------

    def _say(self, kind: str, text: str) -> None:
        self.message = (kind, text)
        self.notice.value = message(text, kind)
        self.update_static()

    def _run(self, what: str, action: Callable[[], Any], done: str) -> bool:
        """Do one action, then re-read; any failure becomes the panel's message."""
        with self._lock:
            try:
                action()
            except Exception as exc:
                self._say("error", str(exc) if what in str(exc) else f"could not {what}: {exc}")
                return False
            if self.refresh():
                self._say("done", done)
            return True

    def create(self, name: str, max: float, type: str = "allow", threshold: float | None = None) -> bool:
        """Create a limit through ``limits.create``; True if Pay-i accepted it."""
        return self._run(
            f"create limit {name!r}",
            lambda: self.api.create(name, max, type=type, threshold=threshold),
            f"created {type} limit {name!r} of {money(max)}",
        )

    def set_max(self, limit_id: str, max: float) -> bool:
        done = f"max of {limit_id} set to {money(max)}"
        return self._run(f"update limit {limit_id!r}", lambda: self.api.update(limit_id, max=max), done)

    def reset(self, limit_id: str) -> bool:
        return self._run(f"reset limit {limit_id!r}", lambda: self.api.reset(limit_id), f"{limit_id} reset to $0 spent")

    def delete(self, limit_id: str) -> bool:
        return self._run(f"delete limit {limit_id!r}", lambda: self.api.delete(limit_id), f"deleted {limit_id}")

    def _create_from_form(self) -> None:
        text = self.new_threshold.value.strip()
        try:
            threshold = float(text) if text else None
        except ValueError:
            self._say("error", f"risk threshold must be a fraction of max such as 0.8, or empty; got {text!r}")
            return
        if self.create(self.new_name.value.strip(), self.new_max.value, self.new_type.value, threshold):
            self.new_name.value = ""
            self.new_threshold.value = ""

    def row(self, limit_id: str) -> _LimitRow:
        """The widgets of one limit's row (its max field and buttons)."""
        return self._rows[limit_id]

    # -- following the notebook ------------------------------------------------------------

    def _after_cell(self, scope: Any) -> None:
        """Cell listener: re-read in the background once the cell's calls reached Pay-i."""
        with self._lock:
            if self._closed:
                return
            if self._background is not None and self._background.is_alive():
                self._again = [*(self._again or []), *scope.refs]
                return
            self._background = threading.Thread(
                target=self._refresh_after, args=(list(scope.refs),), name="payi-budget-refresh", daemon=True
            )
            self._background.start()

    def _refresh_after(self, refs: list[Any]) -> None:
        while True:
            deadline = time.monotonic() + DELIVERY_WAIT_S
            while refs and time.monotonic() < deadline and self.session.ledger.totals(refs).statuses.get("pending"):
                time.sleep(0.05)
            if self._closed:
                return
            self.refresh()
            with self._lock:
                refs, self._again = self._again or [], None
                if not refs:
                    self._background = None
                    return

    def close(self) -> None:
        """Stop refreshing after cells and close every control."""
        with self._lock:
            self._closed = True
            if self._after_cell in self.session.cell_listeners:
                self.session.cell_listeners.remove(self._after_cell)
            self._rows = {}
        self.retired()
        for child in (*self.children, self._empty):
            close_tree(child)
        super().close()

    # -- static views ----------------------------------------------------------------------

    def html(self) -> str:
        notice = message(self.message[1], self.message[0]) if self.message else ""
        rows = "".join(f'<div style="padding:2px 0">{limit_html(limit)}</div>' for limit in self.limits)
        return box(f"<div>{self._summary_html()}</div>{notice}{rows or muted('No limits yet.')}", "payi-budget-static")

    def text(self) -> str:
        lines = [f"payi · budgets · {plural(len(self.limits), 'limit')}"]
        if self.message:
            lines.append(f"{self.message[0]}: {self.message[1]}")
        lines += [f"  {limit.describe()}" for limit in self.limits]
        return "\n".join(lines)
