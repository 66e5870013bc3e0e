"""The analytics objects behind ``pn.*``: use cases, KPIs, annotations, reports and the ledger's KPI view.

Kept out of ``payi_notebook/__init__`` so ``import payi_notebook`` (and ``%load_ext``) stays
cheap: pandas and the analytics modules load the first time one of these is used, or when
the session is created (it installs the KPI view on the ledger here).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import tracking
from .analytics import outcomes as _outcomes
from .analytics.annotate import Annotator
from .analytics.kpis import Kpis, ScoreBook
from .analytics.reports import Reports
from .analytics.use_cases import UseCases
from .client import PayiClient
from .ledger import add_df_view
from .session import get_session


def payi_client() -> PayiClient:
    """The session's long-lived Pay-i client (started on first use)."""
    return get_session().start().shared_client()


def current_instance() -> tuple[str | None, str | None]:
    """The use case instance of the innermost tracked scope (the ``%%payi`` cell), if any."""
    scope = tracking.current()
    return (scope.context.use_case_name, scope.context.use_case_id) if scope is not None else (None, None)


def _flush(timeout: float) -> Any:
    return get_session().flush(timeout)


scores = ScoreBook()
notes = _outcomes.Notes()
use_cases = UseCases(payi_client)
kpis = Kpis(payi_client, scores, current_instance)
annotator = Annotator(payi_client, lambda: get_session().ledger.df, _flush, notes)
reports = Reports(payi_client)
_view = _outcomes.View(scores, notes)


def _ledger_view(df: pd.DataFrame, key: tuple[int, int, int]) -> pd.DataFrame:
    try:
        return _view(df, key)
    except Exception as exc:  # the ledger still shows, without the join
        get_session().report("joining KPI scores and annotations to the ledger failed", exc)
        return df


add_df_view(_ledger_view)
