"""Look and escaping shared by every widget: colours, chips, number formats, one ``esc``.

Colours come from JupyterLab's CSS variables with fallbacks, so the same markup reads on
light and dark themes and in a static HTML export. Every string that came from a user or
from Pay-i goes through ``esc`` before it is placed in markup (plotly labels too: plotly
turns entities back into text and would otherwise interpret tags).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

FONT = "var(--jp-ui-font-family, -apple-system, 'Segoe UI', Roboto, sans-serif)"
MONO = "var(--jp-code-font-family, SFMono-Regular, Menlo, Consolas, monospace)"
TEXT = "var(--jp-ui-font-color1, #24292f)"
MUTED = "var(--jp-ui-font-color2, #6e7781)"
BORDER = "var(--jp-border-color2, #d0d7de)"
TRACK = "var(--jp-layout-color3, #e5e7eb)"
ERROR = "#cf222e"
OK = "#1a7f37"

STATE_COLOURS: dict[str, str] = {
    "ok": OK,
    "exceeded": "#bf8700",
    "overrun": ERROR,
    "blocked": ERROR,
    "blocked_external": "#8250df",
    "failed": "#6e7781",
}
STATUS_COLOURS: dict[str, str] = {
    "pending": "#bf8700",
    "sent": OK,
    "proxied": OK,
    "failed": ERROR,
    "blocked": ERROR,
}
TABLE = "border-collapse:collapse;border:none;margin:2px 0 0 0;table-layout:auto;font-size:inherit;color:inherit"
"""Inline table style that undoes notebook front ends' table CSS (centred, fixed layout)."""
SERIES_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")  # cost / input, output, cached
SOURCE_NAMES = {"payi": "Pay-i", "estimate": "estimated", "unknown": "unpriced", "mixed": "Pay-i + estimated"}


def esc(value: Any) -> str:
    """Any value as HTML-safe text (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def money(value: Any) -> str:
    """USD for people: small amounts keep their significant digits, NaN is 'n/a'."""
    if is_missing(value):
        return "n/a"
    value = float(value)
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.4f}"


def unpriced_reason(models: Sequence[str]) -> str:
    """Why calls have no cost: the models neither Pay-i nor the local price list can price."""
    if not models:
        return "no known price"
    shown = ", ".join(models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
    return f"no known price for {shown}"


def cost_text(cost: float, calls: int, unpriced: int) -> str:
    """A group's cost for people: never a bare $0 when its calls could not be priced."""
    calls, unpriced = int(calls), int(unpriced)  # a pandas row may hold them as floats
    if calls and unpriced >= calls:
        return "unpriced"
    return money(cost) + (f" + {unpriced:,} unpriced" if unpriced else "")


def count(value: Any) -> str:
    """Thousands-separated integers; 1.2M / 3.4k above ten thousand."""
    value = int(value)
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:,}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def chip(label: str, colour: str, title: str | None = None) -> str:
    """A small rounded tag in ``colour``; ``label`` and ``title`` are escaped here."""
    tip = f' title="{esc(title)}"' if title else ""
    return (
        f'<span class="payi-chip"{tip} style="display:inline-block;border:1px solid {colour};color:{colour};'
        f"border-radius:9px;padding:0 7px;margin:1px 2px;font-size:11px;line-height:16px;"
        f'white-space:nowrap">{esc(label)}</span>'
    )


def state_chip(state: str, label: str | None = None) -> str:
    """A limit state (``ok``, ``exceeded``, ...) as a chip in its colour."""
    return chip(label if label is not None else state, STATE_COLOURS.get(state, MUTED), state)


NO_MATH = "tex2jax_ignore mathjax_ignore"
"""Classes that keep MathJax (JupyterLab, nbconvert) from reading ``$1 ... $2`` as LaTeX."""


def box(body: str, cls: str) -> str:
    """The outer frame every static view uses (never typeset as math)."""
    return (
        f'<div class="{cls} {NO_MATH}" style="font-family:{FONT};font-size:12px;color:{TEXT};line-height:1.45;'
        f'max-width:960px">{body}</div>'
    )


def muted(text: str) -> str:
    """Escaped text in the secondary colour."""
    return f'<span style="color:{MUTED}">{esc(text)}</span>'


def message(text: str, kind: str = "error") -> str:
    """A one-line notice: red for errors, green for done, grey for info; ``text`` is escaped."""
    colour = {"error": ERROR, "done": OK}.get(kind, MUTED)
    return (
        f'<div class="payi-message payi-{kind}" style="font-family:{FONT};font-size:12px;color:{colour};'
        f'border-left:3px solid {colour};padding:2px 8px;margin:4px 0">{esc(text)}</div>'
    )
