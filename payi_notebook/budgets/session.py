"""The session's budget: one ``LocalBudget`` across cells, kept when its amount changes."""

from __future__ import annotations

from typing import Any

from .reservation import LocalBudget, set_default_thresholds

SESSION_LABEL = "session budget"


class SessionBudgets:
    """What the session holds of budgets: the session budget and the default thresholds."""

    def __init__(self) -> None:
        self.session: LocalBudget | None = None

    def apply(self, settings: Any) -> LocalBudget | None:
        """Follow the settings; raising or lowering the amount keeps what was spent."""
        set_default_thresholds(settings.budget_thresholds)
        amount = settings.session_budget
        if amount is None:
            self.session = None
        elif self.session is None:
            self.session = LocalBudget(amount, SESSION_LABEL)
        else:
            self.session.budget = amount
            self.session.thresholds = tuple(settings.budget_thresholds)
        return self.session
