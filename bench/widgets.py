"""Widget benchmark: cost breakdown build and group-by switch at 10,000 and 1,000,000 rows; badge cost per cell.

    python bench/widgets.py [--sizes 10000,1000000] [--runs 5]

Ledgers are filled with the realistic events of ``bench/ledger.py`` (several providers,
models, use cases, users, limits, cells; some proxied calls with Pay-i costs). Timings are
medians of ``--runs`` and are wall-clock in this process, with the front end left out
(no kernel: widget messages go nowhere, as the cost of sending them is the comm's).

- "after a change": one row is appended before each build, so the ledger's column frames
  are rebuilt, as when the widget is opened or refreshed after new calls.
- "switch": the group-by dropdown moves to each grouping in turn (rows unchanged).
- "live refresh": one append, then the refresh the debounce timer runs.
- The first widget in a fresh process also pays for importing ipywidgets once (no plotly: charts are SVG).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from ledger import Sessions  # noqa: E402  (bench/ledger.py: its realistic event factory)

from payi_notebook.ledger import Ledger, RowRef  # noqa: E402
from payi_notebook.widgets.aggregate import GROUPS  # noqa: E402
from payi_notebook.widgets.badge import Badge, BadgeBoard  # noqa: E402

TARGET_BUILD_S = 0.5  # CostBreakdown for a million rows
TARGET_FIRST_S = 0.3  # the first breakdown in a warm kernel, kernel side
TARGET_BADGE_MS = 1.0  # one badge render per cell


def filled(sessions: Sessions, rows: int, start: int = 0) -> Ledger:
    ledger = Ledger()
    for chunk in sessions.events(rows, start=start):
        for event in chunk:
            ledger.append(event)
    return ledger


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:10.1f} ms"


def measure(ledger: Ledger, sessions: Sessions, runs: int) -> dict[str, str]:
    from payi_notebook.widgets.breakdown import CostBreakdown

    extra = sessions.events(runs * 3 + 10, start=len(ledger) + 1)
    more = [event for chunk in extra for event in chunk]
    out: dict[str, str] = {}

    after_change, cached = [], []
    for _ in range(runs):
        ledger.append(more.pop())
        gc.collect()
        started = time.perf_counter()
        widget = CostBreakdown(ledger, live=False)
        after_change.append(time.perf_counter() - started)
        widget.close()
        started = time.perf_counter()
        widget = CostBreakdown(ledger, live=False)
        cached.append(time.perf_counter() - started)
        widget.close()
    out["CostBreakdown(), after a change"] = median_ms(after_change)
    out["CostBreakdown(), nothing changed"] = median_ms(cached)

    widget = CostBreakdown(ledger, live=False)
    switches: dict[str, list[float]] = {label: [] for label in GROUPS}
    for _ in range(runs):
        ledger.append(more.pop())
        for label in [*GROUPS][1:] + [next(iter(GROUPS))]:
            switches[label].append(timed(lambda label=label: setattr(widget.group_by, "value", label)))
    per_group = {label: statistics.median(samples) for label, samples in switches.items()}
    out["group-by switch, median"] = f"{statistics.median(per_group.values()) * 1e3:10.1f} ms"
    worst = max(per_group, key=per_group.__getitem__)
    out["group-by switch, slowest"] = f"{per_group[worst] * 1e3:.1f} ms ({worst})"
    metric = [timed(lambda m=m: setattr(widget.metric, "value", m)) for _ in range(runs) for m in ("tokens", "cost")]
    out["metric toggle (cost/tokens)"] = median_ms(metric)

    live = []
    for _ in range(runs):
        ledger.append(more.pop())
        live.append(timed(lambda: widget.refresh(force=False)))
    out["live refresh after one append"] = median_ms(live)
    widget.close()
    return out


def badge_costs(ledger: Ledger, runs: int) -> dict[str, str]:
    """One cell of 5 calls: render its badge; refresh a board of 20 live badges after a change."""
    generation = ledger.generation
    cells = [[RowRef(generation, i * 5 + k) for k in range(5)] for i in range(20)]
    renders = []
    for _ in range(runs * 20):
        renders.append(timed(lambda: (Badge(ledger.totals(cells[0])).html(), Badge(ledger.totals(cells[0])).text())))

    class Handle:
        def update(self, badge: Badge) -> None:
            badge.html()

    board = BadgeBoard(ledger, lambda badge: Handle(), delay=3600)
    for refs in cells:
        board.show(refs)
    refreshes = []
    for _ in range(runs):
        for refs in cells:
            ledger.update(refs[0], status="sent")
        refreshes.append(timed(board.refresh))
    board.close()
    return {
        "badge: totals + HTML + text, one cell": f"{statistics.median(renders) * 1e6:10.0f} us",
        "badge board refresh, 20 live cells": median_ms(refreshes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated ledger sizes")
    parser.add_argument("--runs", type=int, default=5, help="runs per timing; medians are reported")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"Widget benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    sessions = Sessions(usages=10_000)
    small = filled(sessions, 100)
    started = time.perf_counter()
    from payi_notebook.widgets.breakdown import CostBreakdown

    widget = CostBreakdown(small, live=False)
    shown = widget._bundles()  # the three outputs %payi breakdown displays, static twins included
    first = time.perf_counter() - started
    size = sum(len(json.dumps(data)) for data in shown) + sum(len(json.dumps(w.get_state())) for w in widget.children)
    widget.close()
    print(
        f"first %payi breakdown in a fresh process (imports ipywidgets, builds widgets and static twins): "
        f"{first * 1e3:.0f} ms (target <= {TARGET_FIRST_S * 1e3:.0f} ms), {size:,} bytes of outputs and chart state"
    )

    results: dict[int, dict[str, str]] = {}
    badges: dict[str, str] = {}
    for rows in sizes:
        started = time.perf_counter()
        ledger = filled(sessions, rows)
        print(f"  ({rows:,} rows filled in {time.perf_counter() - started:.1f} s)")
        results[rows] = measure(ledger, sessions, args.runs)
        if rows == max(sizes):
            badges = badge_costs(ledger, args.runs)
        del ledger
        gc.collect()

    names = list(results[sizes[0]])
    width = max(len(n) for n in names)
    print(f"{'':{width}}  " + "  ".join(f"{f'{rows:,} rows':>20}" for rows in sizes))
    for name in names:
        print(f"{name:{width}}  " + "  ".join(f"{results[rows][name].strip():>20}" for rows in sizes))
    print(f"target: CostBreakdown() for 1,000,000 rows <= {TARGET_BUILD_S} s")
    print(f"badge (on the {max(sizes):,}-row ledger):")
    for name, value in badges.items():
        print(f"  {name:{width}}  {value.strip():>18}")
    print(f"target: one badge render <= {TARGET_BADGE_MS} ms per cell")


if __name__ == "__main__":
    main()
