"""``StatusReport`` moved to ``payi_notebook.status_report`` (a plain report, not a widget); kept importable here."""

from __future__ import annotations

from ..status_report import StatusReport

__all__ = ["StatusReport"]
