"""``%payi df``: the ledger as people read it, money first; ``pn.ledger().df`` keeps every column.

The view is a plain DataFrame (so it renders as an HTML table and as text everywhere, and
can still be filtered), with the columns a reader wants first: cost, where it came from,
the model and tokens, who and what for, then status. Ids, bodies and units stay in the
full frame.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ..ledger import Ledger

READABLE = {
    "cost_usd": "cost ($)",
    "cost_source": "cost from",
    "resource": "model",
    "input_tokens": "in",
    "output_tokens": "out",
    "cache_read_tokens": "cached",
    "use_case_name": "use case",
    "user_id": "user",
    "limit_ids": "limits",
    "execution_count": "cell",
    "mode": "mode",
    "status": "status",
    "latency_ms": "ms",
    "error": "error",
}
"""Ledger column → heading, in display order."""


def readable(ledger: Ledger) -> pd.DataFrame:
    """One row per call: ``READABLE``'s columns under short headings, the local time as the index."""
    df = ledger.frame([*READABLE, "timestamp"])
    view = df[list(READABLE)].rename(columns=READABLE)
    local = datetime.now().astimezone().tzinfo
    view.index = pd.DatetimeIndex(df["timestamp"]).tz_convert(local).tz_localize(None).round("s").rename("time")
    view["limits"] = [", ".join(ids) if isinstance(ids, list | tuple) and len(ids) else "" for ids in view["limits"]]
    view["error"] = view["error"].fillna("")
    return view
