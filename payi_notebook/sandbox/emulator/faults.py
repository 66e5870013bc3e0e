"""Injectable faults: a directive list from the ``X-Emulator-Fault`` header or a model suffix.

Syntax (items separated by commas, see README.md): ``429``, ``500``, ``529`` (any status
400-599), ``retry=S``, ``delay=S``, ``interval=S``, ``cut=N``, ``times=N``, ``reply=N``,
``hops=N`` (Gemini streams).
``gpt-4o-mini@429,retry=2`` and header ``X-Emulator-Fault: 429,retry=2`` mean the same.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from .errors import ApiError

FAULT_HEADER = "x-emulator-fault"
MODEL_SEPARATOR = "@"
MAX_SECONDS = 600.0
MAX_COUNT = 1_000_000
DEFAULT_RATE_LIMIT_RETRY_AFTER = 1.0

_SECONDS = ("retry", "delay", "interval")
_COUNTS = {"cut": 0, "times": 1, "reply": 1, "hops": 1}


class StreamCut(Exception):
    """Raised inside a response body to drop the connection on purpose."""


@dataclass(frozen=True)
class Faults:
    """What to do to one request; the default is nothing."""

    status: int | None = None
    retry: float | None = None
    delay: float = 0.0
    interval: float = 0.0
    cut: int | None = None
    times: int | None = None
    reply: int | None = None
    hops: int | None = None  # a Gemini stream in this many continuation hops
    source: str = ""

    def retry_after(self) -> float | None:
        """Seconds for ``Retry-After``: as given, else 1 s on a 429."""
        if self.retry is not None:
            return self.retry
        return DEFAULT_RATE_LIMIT_RETRY_AFTER if self.status == 429 else None


NO_FAULTS = Faults()


def _bad(item: str, why: str) -> ApiError:
    return ApiError(
        400,
        f"Bad emulator fault directive {item!r}: {why}. Use e.g. '429', '500', 'retry=2', 'delay=0.5', "
        "'interval=0.01', 'cut=3', 'times=1', 'reply=200', 'hops=2', comma-separated.",
        code="invalid_fault",
    )


def parse_directives(text: str, base: Faults = NO_FAULTS) -> Faults:
    """``base`` updated by each comma-separated directive in ``text`` (later items win)."""
    faults = base
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, has_value, value = item.partition("=")
        name = name.strip().lower()
        value = value.strip()
        if name.isdigit() and not has_value:
            status = int(name)
            if len(name) != 3 or not 400 <= status <= 599:
                raise _bad(item, "an injected status must be an HTTP error code from 400 to 599")
            faults = replace(faults, status=status)
        elif name in _SECONDS and has_value:
            try:
                seconds = float(value)
            except ValueError:
                raise _bad(item, f"{name} takes seconds, e.g. {name}=0.5") from None
            if not 0 <= seconds <= MAX_SECONDS:
                raise _bad(item, f"{name} must be between 0 and {MAX_SECONDS:g} seconds")
            faults = replace(faults, **{name: seconds})  # type: ignore[arg-type]  # name is one of _SECONDS, all float fields
        elif name in _COUNTS and has_value:
            if not value.isdigit() or int(value) < _COUNTS[name] or int(value) > MAX_COUNT:
                raise _bad(item, f"{name} takes a whole number from {_COUNTS[name]} to {MAX_COUNT}")
            faults = replace(faults, **{name: int(value)})  # type: ignore[arg-type]  # name is one of _COUNTS, all int fields
        else:
            raise _bad(item, "unknown directive")
    return replace(faults, source=",".join(part for part in (base.source, text.strip()) if part))


def _looks_like_directives(suffix: str) -> bool:
    first = suffix.split(",", 1)[0].strip()
    return "=" in first or (len(first) == 3 and first.isdigit())


def split_model(model: str) -> tuple[str, str]:
    """``(model, directives)``: the model name with a fault suffix taken off, and the suffix.

    A suffix counts only if its first item is a 3-digit status or ``name=value``, so names
    that contain ``@`` for other reasons (``claude-sonnet-4@20250514``) are left intact.
    """
    name, separator, suffix = model.rpartition(MODEL_SEPARATOR)
    if separator and name and _looks_like_directives(suffix):
        return name, suffix
    return model, ""


def resolve(header: str | None, model_suffix: str) -> Faults:
    """Faults from the model suffix, then the header (the header wins on conflicts)."""
    faults = parse_directives(model_suffix) if model_suffix else NO_FAULTS
    return parse_directives(header, faults) if header else faults


class FaultCounter:
    """Counts requests per directive so ``times=N`` faults only the first N of them."""

    def __init__(self, max_keys: int = 4096) -> None:
        self._counts: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self._max_keys = max_keys

    def apply(self, faults: Faults, key: tuple[Any, ...]) -> Faults:
        """``faults`` while within ``times``, then no faults at all."""
        if faults.times is None:
            return faults
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        if len(self._counts) > self._max_keys:
            self._counts.popitem(last=False)
        return faults if count <= faults.times else NO_FAULTS

    def clear(self) -> None:
        self._counts.clear()


def injected_error(faults: Faults) -> ApiError:
    """The error response a status directive asks for, with Retry-After when it applies."""
    assert faults.status is not None
    headers = {}
    retry_after = faults.retry_after()
    if retry_after is not None:
        headers = {"retry-after": f"{retry_after:g}", "retry-after-ms": f"{retry_after * 1000:g}"}
    messages = {
        429: "Rate limit reached (injected by the provider emulator).",
        529: "Overloaded (injected by the provider emulator).",
    }
    message = messages.get(faults.status, f"HTTP {faults.status} injected by the provider emulator.")
    code = "rate_limit_exceeded" if faults.status == 429 else None
    return ApiError(faults.status, message, code=code, headers=headers)


class _HideStreamCuts(logging.Filter):
    """uvicorn logs every exception escaping an app; a deliberate cut is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


_FILTER = _HideStreamCuts()


def hide_stream_cuts_in_server_log() -> None:
    """Install (once) the filter that keeps deliberate cuts out of uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
