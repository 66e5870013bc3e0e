"""Charts as self-contained SVG: the live widgets show them and every static export keeps them.

One picture serves both the live view and the saved notebook, so a reload, an nbconvert
export offline or a JS-free renderer shows the same marks with the same numbers. No
JavaScript and no downloaded browser are needed (plotly.js would be 4.7 MB per page and
kaleido a headless Chrome). Colours are literal (an image sees no page CSS) and read on
light and dark themes; every label is escaped; each plotted mark has class ``payi-mark``
and a ``<title>`` (the hover text).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from .style import SERIES_COLOURS, esc

FONT = "-apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK = "#7f7f7f"
GRID = "rgba(128,128,128,0.25)"
WIDTH = 640
MAX_LABEL_CHARS = 28
MAX_DOTS = 60  # timelines with more points show the line and the last point only


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="payi-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
        f'font-family="{esc(FONT)}" font-size="11" fill="{INK}"><title>{esc(title)}</title>'
        f'<text x="4" y="14" font-size="12" font-weight="600">{esc(title)}</text>'
    )


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    title: str,
    fmt: Callable[[float], str],
    notes: Sequence[str] | None = None,
    width: int = WIDTH,
) -> str:
    """Horizontal stacked bars, one row per label, the total (or ``notes[i]``) written at each bar's end."""
    label_w = min(8 + 6.4 * max((len(_short(str(label))) for label in labels), default=4), 200)
    value_w = 110
    plot_w = max(width - label_w - value_w, 80)
    row_h, top = 22, 26
    height = top + row_h * max(len(labels), 1) + 8 + (16 if len(series) > 1 else 0)
    totals = [sum(float(values[i]) for _, values in series) for i in range(len(labels))]
    peak = max(totals, default=0.0) or 1.0
    parts = [_open(width, height, title)]
    parts.append(
        f'<line x1="{label_w:.1f}" y1="{top - 2}" x2="{label_w:.1f}" y2="{top + row_h * len(labels)}" stroke="{GRID}"/>'
    )
    if not labels:
        parts.append(f'<text x="{label_w + 6:.1f}" y="{top + 14}">no calls yet</text>')
    for i, label in enumerate(labels):
        y = top + i * row_h
        parts.append(
            f'<text x="{label_w - 6:.1f}" y="{y + 15}" text-anchor="end">{esc(_short(str(label)))}'
            f"<title>{esc(label)}</title></text>"
        )
        x = label_w
        for s, (name, values) in enumerate(series):
            value = float(values[i])
            w = plot_w * value / peak
            if value <= 0:
                continue
            tip = f"{label} · {name}: {fmt(value)}" if len(series) > 1 else f"{label}: {fmt(value)}"
            parts.append(
                f'<rect class="payi-mark" x="{x:.1f}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_h - 8}" '
                f'rx="2" fill="{SERIES_COLOURS[s % len(SERIES_COLOURS)]}"><title>{esc(tip)}</title></rect>'
            )
            x += w
        note = notes[i] if notes is not None else fmt(totals[i])
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{esc(note)}</text>')
    if len(series) > 1:
        x, y = label_w, height - 8
        for s, (name, _) in enumerate(series):
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" rx="2" fill="{colour}"/>')
            parts.append(f'<text x="{x + 14:.1f}" y="{y}">{esc(name)}</text>')
            x += 24 + 6.4 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _clock(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6).strftime("%H:%M:%S")  # the times are already local


def step_chart(
    times: np.ndarray, values: np.ndarray, title: str, fmt: Callable[[float], str], width: int = WIDTH
) -> str:
    """A running total as a step line over time; a single point is drawn as a dot."""
    height, left, right, top, bottom = 200, 70, 16, 26, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [_open(width, height, title)]
    x0, y0 = left, top + plot_h
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + plot_w}" y2="{y0}" stroke="{GRID}"/>')
    if len(times) == 0:
        parts.append(f'<text x="{x0 + 6}" y="{y0 - 8}">no calls yet</text></svg>')
        return "".join(parts)
    micros = times.astype("datetime64[us]").astype(np.int64)
    start, end = int(micros.min()), int(micros.max())
    if end - start < 2_000_000:  # one call, or a burst: a minute of room around it
        start, end = start - 30_000_000, end + 30_000_000
    peak = float(np.max(values)) if len(values) else 0.0
    peak = peak if peak > 0 else 1.0
    xs = x0 + (micros - start) / (end - start) * plot_w
    ys = y0 - np.asarray(values, dtype=float) / peak * plot_h
    parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0 + plot_w}" y2="{top}" stroke="{GRID}"/>')
    parts.append(f'<text x="{x0 - 6}" y="{top + 4}" text-anchor="end">{esc(fmt(peak))}</text>')
    parts.append(f'<text x="{x0 - 6}" y="{y0 + 4}" text-anchor="end">$0</text>')
    parts.append(f'<text x="{x0}" y="{height - 8}">{_clock(start)}</text>')
    parts.append(f'<text x="{x0 + plot_w}" y="{height - 8}" text-anchor="end">{_clock(end)}</text>')
    path = [f"M{xs[0]:.1f},{y0:.1f}", f"L{xs[0]:.1f},{ys[0]:.1f}"]
    for i in range(1, len(xs)):
        path.append(f"H{xs[i]:.1f}V{ys[i]:.1f}")
    line = "".join(path)
    parts.append(f'<path d="{line}H{xs[-1]:.1f}V{y0:.1f}Z" fill="rgba(76,120,168,0.12)" stroke="none"/>')
    parts.append(f'<path class="payi-line" d="{line}" fill="none" stroke="{SERIES_COLOURS[0]}" stroke-width="2"/>')
    dots = range(len(xs)) if len(xs) <= MAX_DOTS else [len(xs) - 1]
    for i in dots:
        tip = f"{_clock(int(micros[i]))} · {fmt(float(values[i]))}"
        parts.append(
            f'<circle class="payi-mark" cx="{xs[i]:.1f}" cy="{ys[i]:.1f}" r="3" fill="{SERIES_COLOURS[0]}">'
            f"<title>{esc(tip)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def data_uri(svg: str) -> str:
    """The picture as an ``<img>`` source, for HTML views that must not carry inline SVG."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
