"""Pay-i's rules for a limit's settings, in one place.

The REST client (``client.py``), ``pn.limits`` and the sandbox all check with these, so a
value one of them accepts the others accept too. From Pay-i's docs (limits, limit APIs,
error codes): ``max`` is an amount in USD that must be above zero (``invalid_max_limit``:
"max too low"); ``threshold`` is the risk fraction of max, from 0.75 up to 1.0 (the
default). Pay-i documents no length or alphabet for names and ids; ours: at most
``MAX_LIMIT_TEXT`` characters, and an id made of URL-unreserved characters, so that it can
be addressed as ``/limits/{limit_id}`` (an id like ``team/q4`` could be created but never
read, updated or deleted) and named in the comma-separated ``xProxy-Limit-IDs`` header.
"""

from __future__ import annotations

import math
import re
from typing import Any

LIMIT_TYPES = ("allow", "block")
THRESHOLD_MIN = 0.75
THRESHOLD_MAX = 1.0
MAX_LIMIT_TEXT = 256
LIMIT_ID = re.compile(rf"[A-Za-z0-9._~-]{{1,{MAX_LIMIT_TEXT}}}")


def max_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a limit's max (None when it can)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"max must be an amount in USD (a finite number), got {value!r}"
    if value <= 0:
        return f"max must be above 0 USD, got {value!r}"
    return None


def type_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a limit's type."""
    if value not in LIMIT_TYPES:
        return f"limit type must be 'allow' or 'block', got {value!r}"
    return None


def threshold_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a limit's threshold (None when it can; None itself means 1.0)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"threshold must be a number, got {value!r}"
    if not THRESHOLD_MIN <= value <= THRESHOLD_MAX:
        return f"threshold must be a fraction of max from {THRESHOLD_MIN} to {THRESHOLD_MAX}, e.g. 0.8, got {value!r}"
    return None


def name_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a limit's name."""
    if not isinstance(value, str) or not value.strip():
        return f"limit name must be a non-empty string, got {value!r}"
    if len(value) > MAX_LIMIT_TEXT:
        return f"limit name is {len(value)} characters long; use at most {MAX_LIMIT_TEXT}"
    return None


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a limit's id."""
    if not isinstance(value, str) or not value:
        return f"limit id must be a non-empty string, got {value!r}"
    if not LIMIT_ID.fullmatch(value) or value in (".", ".."):
        return (
            f"limit id {value[:80]!r} is invalid: use 1-{MAX_LIMIT_TEXT} characters from "
            "A-Z a-z 0-9 . _ ~ - (it goes into URL paths and a comma-separated header)"
        )
    return None


def check(problem: str | None) -> None:
    """Raise ValueError with ``problem`` if there is one."""
    if problem is not None:
        raise ValueError(problem)
