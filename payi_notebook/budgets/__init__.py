"""Budgets inside the notebook: reservations that keep a cell, scope or session within its USD budget.

``bounds`` (what a call can cost at most), ``reservation`` (the ``Reserver`` interface and the
in-process ``LocalBudget``), ``guard`` (capture's admit/settle step), ``estimate``
(``pn.estimate``), ``progress`` (``pn.progress``) and ``live`` (spend shown while a cell runs).
"""

from __future__ import annotations

from ..context import check_budget
from .reservation import BudgetExceeded, BudgetState, BudgetWarning, LocalBudget, Refusal, Reserver

__all__ = ["BudgetExceeded", "BudgetState", "BudgetWarning", "LocalBudget", "Refusal", "Reserver", "check_budget"]
