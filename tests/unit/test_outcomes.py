"""The KPI join behind ``pn.ledger().df`` and ``pn.outcomes()``, on a real ledger."""

from __future__ import annotations

import math

import pandas as pd

from payi_notebook.analytics.kpis import ScoreBook
from payi_notebook.analytics.outcomes import Notes, View, instances, join
from payi_notebook.context import Context, derive
from payi_notebook.events import UsageEvent
from payi_notebook.ledger import Ledger

from support.events import openai_event


def _event(ctx: Context, cost: float) -> UsageEvent:
    return openai_event(10, 5, est_cost_usd=cost, context=ctx)


def test_scores_join_on_name_and_instance_and_a_cached_view_sees_new_scores() -> None:
    ledger, book, notes = Ledger(), ScoreBook(), Notes()
    a1 = derive(Context(), use_case_name="a", use_case_id="same-id", use_case_version=1)
    b1 = derive(Context(), use_case_name="b", use_case_id="same-id", use_case_version=1)  # same id, other use case
    a2 = derive(Context(), use_case_name="a", use_case_id="other", use_case_version=2)
    for ctx, cost in ((a1, 1.0), (b1, 2.0), (a2, 4.0), (a2, 8.0), (Context(), 16.0)):
        ledger.append(_event(ctx, cost))
    view = View(book, notes)
    key = (id(ledger), 0, ledger.version)
    assert "kpi_accepted" not in view(ledger.df, key).columns

    book.set(("a", "same-id", "accepted"), 1.0)
    book.set(("a", "other", "accepted"), 0.0)
    book.set(("b", "same-id", "turns"), 3.0)
    joined = view(ledger.df, key)
    assert list(joined["kpi_accepted"].fillna(-1)) == [1.0, -1, 0.0, 0.0, -1]
    assert list(joined["kpi_turns"].fillna(-1)) == [-1, 3.0, -1, -1, -1]
    book.set(("a", "other", "accepted"), 1.0)  # the cached view is rebuilt for a new score
    assert list(view(ledger.df, key)["kpi_accepted"].fillna(-1)) == [1.0, -1, 1.0, 1.0, -1]
    assert ledger.df.equals(ledger.df) and "kpi_accepted" not in ledger.df.columns  # storage untouched

    per = instances(join(ledger.df, book, notes))
    assert list(zip(per["use_case_name"], per["use_case_id"])) == [("a", "same-id"), ("b", "same-id"), ("a", "other")]
    assert list(per["calls"]) == [1, 1, 2] and list(per["cost_usd"]) == [1.0, 2.0, 12.0]
    assert list(per["use_case_version"]) == [1, 1, 2]
    assert per.loc[1, "kpi_turns"] == 3.0 and math.isnan(per.loc[0, "kpi_turns"])
    by_version = per[per["use_case_name"] == "a"].groupby("use_case_version")[["cost_usd", "kpi_accepted"]].sum()
    assert list(by_version["cost_usd"] / by_version["kpi_accepted"]) == [1.0, 12.0]


def test_annotations_merge_into_properties_of_their_row_only() -> None:
    ledger, book, notes = Ledger(), ScoreBook(), Notes()
    ctx = derive(Context(), use_case_name="a", properties={"prompt": "v1"})
    ledger.append(_event(ctx, 1.0))
    ledger.append(_event(ctx, 1.0))
    first, second = ledger.df["event_id"]
    assert notes.add(first, {"prompt": "v1"}, {"verdict": "good", "prompt": None}) == {"verdict": "good"}
    joined = View(book, notes)(ledger.df, (id(ledger), 0, ledger.version)).set_index("event_id")
    assert joined.loc[first, "properties"] == {"verdict": "good"}
    assert joined.loc[second, "properties"] == {"prompt": "v1"}
    assert instances(pd.DataFrame(columns=ledger.df.columns)).empty
