"""What a Pay-i request can end in besides an answer: a refusal or no answer at all."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

_RETRYABLE_STATUS = frozenset({408, 429})


class PayiError(Exception):
    """Pay-i refused a request. ``code`` is Pay-i's stable ``xproxy_error.code`` (may be None)."""

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        xproxy_result: dict[str, Any] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.xproxy_result = xproxy_result
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True when sending the same request again later can succeed (408, 429, 5xx)."""
        return self.status is not None and (self.status in _RETRYABLE_STATUS or self.status >= 500)

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"Pay-i answered {self.status}{code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class PayiUnavailable(PayiError):
    """Pay-i could not be reached (connection refused, reset, timeout); always retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(None, None, message)

    @property
    def retryable(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"Pay-i unreachable: {self.message}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
