"""``pn.report(report_id, start, end)``: a saved Pay-i report (a Query-Builder query) as a DataFrame.

Pay-i answers ``GET /reports/{id}?from&to`` with CSV (``from`` inclusive, ``to`` exclusive).
Dates may be strings, ``datetime``/``date`` or pandas Timestamps; naive ones are taken as UTC.
Columns whose name ends in ``timestamp`` are parsed as UTC datetimes. The sandbox's reports
are ``requests`` (one row per request) and ``kpi_scores``.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import pandas as pd

from . import routes
from .calls import AnalyticsError, ClientFactory, call


def iso_utc(name: str, value: Any) -> str | None:
    """``value`` as ISO 8601 UTC (``…Z``), None for None; refuses what is not a date."""
    if value is None:
        return None
    if not isinstance(value, (str, date, datetime, pd.Timestamp)):
        raise AnalyticsError(f"{name} must be a date, datetime or ISO 8601 string, got {value!r}")
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise AnalyticsError(
            f"{name}: {value!r} is not a date; use ISO 8601, e.g. '2026-01-31' or '2026-01-31T12:00Z'"
        ) from None
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_frame(text: str) -> pd.DataFrame:
    if not text.strip():
        return pd.DataFrame()
    frame = pd.read_csv(io.StringIO(text))
    for column in frame.columns:
        if str(column).lower().endswith("timestamp"):
            frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce")
    return frame


class Reports:
    def __init__(self, client: ClientFactory) -> None:
        self._client = client

    def __call__(self, report_id: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Report ``report_id`` for [``start``, ``end``) as a DataFrame (all time if both are None)."""
        if not isinstance(report_id, str) or not report_id.strip():
            raise AnalyticsError(f"report_id must be a non-empty string, got {report_id!r}")
        since, until = iso_utc("start", start), iso_utc("end", end)
        if since is not None and until is not None and since >= until:
            raise AnalyticsError(f"start ({since}) must be before end ({until})")
        text = call(self._client, f"get report {report_id!r}", lambda c: c.run(routes.report(report_id, since, until)))
        return to_frame(text)
