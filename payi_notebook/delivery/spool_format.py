"""The spool's line format, how lines are read back, and where unreadable ones go.

Every line we write starts with its format version, ``{"v":1,"op":...}``; a line without
``v`` is from before versions existed and is read as version 1 too. A line that is not JSON
(a torn write, garbage) or does not have the shape its ``op`` needs is never trusted: it is
moved to the endpoint directory's quarantine file, one JSON line per bad line with where
it came from and why, so nothing is lost and nothing bad is copied forward.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from ..files import private_open

VERSION = 1
QUARANTINE = "quarantine.ndjson"  # not *.jsonl: never adopted as a spool


class SpoolRecord(NamedTuple):
    """What re-sending one event needs: its ingest body and headers, or the raw captured call
    (``call``) that capture turns back into an event (``body``/``headers`` are then None)."""

    event_id: str
    body: dict[str, Any] | None
    headers: dict[str, str] | None
    call: dict[str, Any] | None = None


class BadLine(NamedTuple):
    """A line that cannot be trusted: its 1-based number, why, and its bytes."""

    number: int
    reason: str
    raw: bytes

    @property
    def torn(self) -> bool:
        """Not JSON at all (a write cut short by a kill, or garbage), rather than the wrong shape."""
        return self.reason.startswith("not JSON")


class Journal(NamedTuple):
    """A spool file read back: its unacknowledged events, and its bad lines."""

    pending: dict[str, SpoolRecord]
    bad: list[BadLine]


def _check(line: Any) -> str | None:
    """Why ``line`` is not a valid spool record (None: it is)."""
    if not isinstance(line, dict):
        return "not a JSON object"
    version = line.get("v", VERSION)
    if version != VERSION:
        return f"format version {version!r}; this payi_notebook reads version {VERSION}"
    op, event_id = line.get("op"), line.get("id")
    if op not in ("event", "call", "ack"):
        return f"unknown op {op!r}"
    if not isinstance(event_id, str) or not event_id:
        return f"{op} record without an id"
    if op == "event":
        body, headers = line.get("body"), line.get("headers")
        if not isinstance(body, dict) or not isinstance(body.get("category"), str):
            return "event record without a body holding a category"
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return "event record without string headers"
    elif op == "call":
        call = line.get("call")
        if not isinstance(call, dict):
            return "call record without a call"
        for key in ("provider", "operation"):
            if not isinstance(call.get(key), str):
                return f"call record without {key!r}"
        if not isinstance(call.get("timestamp"), (int, float)):
            return "call record without a timestamp"
    return None


def read_journal(data: bytes) -> Journal:
    """Unacknowledged events in a spool file's bytes (the mapped file's tail is zeros), and bad lines."""
    pending: dict[str, SpoolRecord] = {}
    bad: list[BadLine] = []
    for number, raw in enumerate(data.rstrip(b"\x00").split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            bad.append(BadLine(number, "not JSON (a torn write or garbage)", raw))
            continue
        reason = _check(line)
        if reason is not None:
            bad.append(BadLine(number, reason, raw))
            continue
        op, event_id = line["op"], line["id"]
        if op == "event":
            pending[event_id] = SpoolRecord(event_id, dict(line["body"]), dict(line["headers"]))
        elif op == "call":
            pending[event_id] = SpoolRecord(event_id, None, None, dict(line["call"]))
        else:
            pending.pop(event_id, None)
    return Journal(pending, bad)


def parse_lines(data: bytes) -> tuple[dict[str, SpoolRecord], int]:
    """Unacknowledged events in a spool file's bytes, and how many lines were unreadable."""
    journal = read_journal(data)
    return journal.pending, len(journal.bad)


def quarantine(directory: Path, source: str, lines: Iterable[BadLine]) -> Path:
    """Append ``lines`` (from spool file ``source``) to ``directory``'s quarantine file (0600)."""
    path = directory / QUARANTINE
    now = time.time()
    out = b"".join(
        json.dumps(
            {"v": VERSION, "at": now, "source": source, "line": bad.number, "reason": bad.reason,
             "text": bad.raw.decode("utf-8", "backslashreplace")},
            separators=(",", ":"),
        ).encode() + b"\n"
        for bad in lines
    )  # fmt: skip
    fd = private_open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(out)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
