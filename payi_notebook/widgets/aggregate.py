"""The numbers behind the cost breakdown: per-group sums and a downsampled cumulative cost.

Everything here reads a few ledger columns (``Ledger.frame``), never the full frame, and
returns small results (tens of groups, at most ``MAX_POINTS`` timeline points), so a
million rows cost one pandas groupby and one numpy histogram. No widget code: tests and the static views
use the same numbers the charts show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from ..ledger import Ledger
from .style import unpriced_reason

GROUPS: dict[str, str] = {
    "model": "resource",
    "cell": "cell_id",
    "use case": "use_case_name",
    "user": "user_id",
    "account": "account_name",
    "limit": "limit_id",
    "provider": "provider",
    "status": "status",
    "mode": "mode",
    "operation": "operation",
}
"""Dropdown labels → ledger columns (``limit_id`` is ``Ledger.frame``'s exploded ``limit_ids``)."""
ALIASES = {"limit ids": "limit", "execution count": "cell"}

METRICS = ("cost", "tokens")
SUMS = ("cost_usd", "input_tokens", "output_tokens", "cache_read_tokens")
MAX_POINTS = 1000
NONE_LABEL = "(none)"
OTHER_LABEL = "other"


def group_label(name: str) -> str:
    """A dropdown label from a label or a column name (``use-case``, ``use_case_name``, ``resource``...)."""
    wanted = name.strip().lower().replace("-", " ").replace("_", " ")
    if wanted in ALIASES:
        return ALIASES[wanted]
    for label, column in GROUPS.items():
        if wanted in (label, column.replace("_", " ")) or wanted.replace(" ", "") == label.replace(" ", ""):
            return label
    raise ValueError(f"cannot group by {name!r}; use one of: {', '.join(GROUPS)}")


@dataclass(frozen=True)
class Breakdown:
    """Per-group totals for one group-by, plus what the whole ledger adds up to.

    ``table`` is indexed by display label (unique, unescaped) with ``calls``, ``cost_usd``
    (NaN costs count as 0), ``input_tokens`` (uncached), ``cached_tokens``,
    ``output_tokens`` and ``tokens``, biggest cost first. ``source_cost``/``source_calls``
    split the total by ``cost_source``. ``times``/``cumulative`` is the cumulative cost curve
    (local time, at most ``MAX_POINTS`` + 1 points).
    """

    by: str
    table: pd.DataFrame
    calls: int
    cost_usd: float
    source_cost: dict[str, float] = field(default_factory=dict)
    source_calls: dict[str, int] = field(default_factory=dict)
    times: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[us]"))
    cumulative: np.ndarray = field(default_factory=lambda: np.array([], dtype=float))
    version: int = -1
    unpriced_models: tuple[str, ...] = ()

    def ordered(self, metric: str, top: int) -> pd.DataFrame:
        """The table sorted by ``metric``, the groups after the first ``top`` merged into one row."""
        key = "cost_usd" if metric == "cost" else "tokens"
        table = self.table.sort_values([key, "calls"], ascending=False, kind="stable")
        if len(table) <= top:
            return table
        head, rest = table.iloc[: top - 1], table.iloc[top - 1 :]
        other = rest.sum().to_frame(f"{OTHER_LABEL} ({len(rest)})").T.astype(table.dtypes.to_dict())
        return pd.concat([head, other])

    def source_caption(self) -> str:
        """Where the costs come from, e.g. ``Pay-i 80% / estimated 20%`` (by amount), plus unpriced calls."""
        total = sum(self.source_cost.values())
        names = {"payi": "Pay-i", "estimate": "estimated"}
        parts = [
            f"{names[source]} {share:.0%}"
            for source in names
            if self.source_calls.get(source)
            for share in [self.source_cost.get(source, 0.0) / total if total > 0 else 0.0]
        ]
        unpriced = self.source_calls.get("unknown", 0)
        if unpriced:
            parts.append(f"{unpriced:,} unpriced ({unpriced_reason(self.unpriced_models)})")
        return " / ".join(parts) if parts else "no calls yet"


def compute(ledger: Ledger, by: str) -> Breakdown:
    """The breakdown of ``ledger`` grouped by the label ``by``, from a few of its columns."""
    version = ledger.version
    column = GROUPS[by]
    keys = [] if column == "limit_id" else [column, *(["execution_count"] if by == "cell" else [])]
    frame = ledger.frame(list(dict.fromkeys([*keys, "resource", "timestamp", "cost_source", *SUMS])))
    if column == "limit_id":  # a call counts toward each of its limits, as Pay-i adds its cost to each
        table = _by_column(ledger.frame([column, *SUMS]), column, cell=False)
    else:
        table = _by_column(frame, column, cell=by == "cell")
    table["tokens"] = table["input_tokens"] + table["output_tokens"]
    table["input_tokens"] -= table["cached_tokens"]
    by_source = frame.groupby("cost_source", observed=False)["cost_usd"].agg(["sum", "size"])
    times, cumulative = cumulative_cost(frame["timestamp"], frame["cost_usd"])
    return Breakdown(
        by=by,
        table=table.sort_values(["cost_usd", "calls"], ascending=False, kind="stable"),
        calls=len(frame),
        cost_usd=float(by_source["sum"].sum()),
        source_cost={str(k): float(v) for k, v in by_source["sum"].items()},
        source_calls={str(k): int(v) for k, v in by_source["size"].items()},
        times=times,
        cumulative=cumulative,
        version=version,
        unpriced_models=tuple(sorted({str(m) for m in frame.loc[frame["cost_usd"].isna(), "resource"].dropna()})),
    )


def _sum_groups(keys: pd.Series, sums: pd.DataFrame) -> pd.DataFrame:
    grouped = sums.groupby(keys, observed=True, dropna=False, sort=False)
    table = grouped.sum(min_count=0)
    table.insert(0, "calls", grouped.size())
    table.insert(1, "unpriced", sums["cost_usd"].isna().groupby(keys, observed=True, dropna=False, sort=False).sum())
    return table.rename(columns={"cache_read_tokens": "cached_tokens"})


def _by_column(frame: pd.DataFrame, column: str, cell: bool) -> pd.DataFrame:
    keys = frame[column]
    table = _sum_groups(keys, frame[list(SUMS)])
    labels = [NONE_LABEL if pd.isna(key) else str(key) for key in table.index]
    if cell:
        runs = frame["execution_count"].groupby(keys, observed=True, dropna=False, sort=False).max()
        labels = [_cell_label(key, runs.get(key)) for key in table.index]
    table.index = pd.Index(_unique(labels), dtype=object, name=column)
    return table


def _cell_label(cell_id: object, run: object) -> str:
    """A cell as people know it: its latest ``In [n]``, else a short id."""
    if run is not None and not pd.isna(run):
        return f"In [{int(run)}]"  # type: ignore[call-overload]
    if cell_id is None or pd.isna(cell_id):
        return NONE_LABEL
    return f"cell {str(cell_id)[:8]}"


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label if n == 0 else f"{label} ({n + 1})")
    return out


def cumulative_cost(
    timestamps: pd.Series, costs: pd.Series, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Running total of cost over time in local time; past ``max_points`` rows, summed into equal time bins.

    Binned, each point is the exact running total at the end of its bin, so the curve's last
    value is the true total whatever the row count.
    """
    if len(timestamps) == 0:
        return np.array([], dtype="datetime64[us]"), np.array([], dtype=float)
    micros = pd.DatetimeIndex(timestamps).as_unit("us").asi8
    cost = np.nan_to_num(np.asarray(costs, dtype=float), nan=0.0)
    if len(micros) <= max_points:
        order = np.argsort(micros, kind="stable")
        points, values = micros[order], np.cumsum(cost[order])
    else:
        start, end = int(micros.min()), int(micros.max())
        edges = np.linspace(start, end if end > start else start + 1, max_points + 1)
        binned, _ = np.histogram(micros, bins=edges, weights=cost)
        points = np.concatenate(([start], edges[1:].astype(np.int64)))
        values = np.concatenate(([0.0], np.cumsum(binned)))
    offset = datetime.now().astimezone().utcoffset()
    shift = int(offset.total_seconds() * 1e6) if offset else 0
    return (points + shift).astype("datetime64[us]"), values
