"""The journal as the user sees it: its health in ``%payi status`` and the badge, and the
journals left for other Pay-i endpoints (``%payi journal``).

Each endpoint directory holds an ``endpoint.json`` naming the endpoint it is for, so the
journals of an endpoint nobody uses any more (a sandbox restarted on another port, a changed
``PAYI_BASE_URL``) can be listed by name and then delivered to the current endpoint or
discarded, by the user's choice, never silently.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..files import private_open
from .places import SUFFIX, entry_problem, lock
from .spool_format import read_journal

INFO = "endpoint.json"
LARGE_BYTES = 256 << 20  # past this much journal, every status and badge says so (nothing is dropped)


@dataclass(frozen=True)
class OtherJournal:
    """Undelivered events journalled for another endpoint, in ``directory``."""

    name: str  # the directory's name: what ``%payi journal deliver|discard`` takes
    endpoint: str  # the endpoint they were for (as ``endpoint.json`` says; else the directory name)
    events: int
    bytes: int
    in_use: int = 0  # files still held by a running process (its own sender delivers them)


@dataclass(frozen=True)
class JournalStatus:
    """The journal's health: where it is, how big, how old its oldest event, and what went wrong."""

    path: str | None
    bytes: int = 0
    oldest_pending_s: float | None = None
    off: str | None = None  # why there is no journal at all (events kept in memory only)
    full: str | None = None  # why the disk refuses more lines (new events kept in memory)
    memory_only: int = 0  # pending events that are not on disk
    torn: int = 0
    invalid: tuple[str, ...] = ()
    quarantine_path: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    others: tuple[OtherJournal, ...] = ()
    cap: int = LARGE_BYTES

    def warning(self) -> str | None:
        """One line when durability is degraded (the badge shows it), else None."""
        if self.off:
            return f"journal off ({self.off}): events are kept in memory only"
        if self.full:
            return f"journal degraded ({self.full}): {self.memory_only} event(s) in memory only until space returns"
        if self.bytes > self.cap:
            return f"journal is {_size(self.bytes)}, past its {_size(self.cap)} cap: is Pay-i reachable?"
        return None

    def rows(self) -> list[tuple[str, str]]:
        """``%payi status`` rows."""
        if self.off:
            rows = [("journal", f"off: {self.off}; events are kept in memory only and lost if the kernel dies")]
        else:
            age = f", oldest pending event {_age(self.oldest_pending_s)} old" if self.oldest_pending_s is not None else ""
            rows = [("journal", f"{_size(self.bytes)} in {self.path}{age}")]
        warning = self.warning()
        if warning and not self.off:
            rows.append(("warning", warning + " (nothing is dropped)"))
        if self.torn or self.invalid:
            shown = "; ".join(self.invalid[:3]) + ("; …" if len(self.invalid) > 3 else "")
            rows.append((
                "quarantined",
                f"{self.torn} torn or garbage line(s), {len(self.invalid)} invalid line(s)"
                + (f" ({shown})" if shown else "") + f", moved to {self.quarantine_path}",
            ))  # fmt: skip
        for entry, reason in sorted(self.skipped.items()):
            rows.append(("skipped", f"{entry}: {reason}"))
        for other in self.others:
            busy = f" ({other.in_use} file(s) in use by a running process)" if other.in_use else ""
            rows.append((
                "other journal",
                f"{other.events} undelivered event(s) for {other.endpoint}{busy}: "
                f"%payi journal deliver {other.name} sends them to this endpoint, "
                f"%payi journal discard {other.name} deletes them",
            ))  # fmt: skip
        return rows


def write_info(directory: Path, endpoint: str) -> None:
    """Name the endpoint a directory's journals are for (0600, rewritten only when it changes)."""
    path = directory / INFO
    data = json.dumps({"v": 1, "endpoint": endpoint}).encode()
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    fd = private_open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _endpoint_of(directory: Path) -> str:
    try:
        return str(json.loads((directory / INFO).read_bytes())["endpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return directory.name


def others(root: Path, own: Path) -> tuple[OtherJournal, ...]:
    """Endpoint directories under ``root`` other than ``own`` that hold undelivered events."""
    found: list[OtherJournal] = []
    try:
        directories = sorted(p for p in root.iterdir() if p.is_dir() and p != own)
    except OSError:
        return ()
    for directory in directories:
        events = size = busy = 0
        for path in directory.glob(f"*{SUFFIX}"):
            if entry_problem(path) is not None:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not lock(fd):
                    busy += 1
                    continue
                with os.fdopen(os.dup(fd), "rb") as file:
                    data = file.read()
            except OSError:
                continue
            finally:
                os.close(fd)
            pending = len(read_journal(data).pending)
            events += pending
            size += len(data.rstrip(b"\x00")) if pending else 0
        if events or busy:
            found.append(OtherJournal(directory.name, _endpoint_of(directory), events, size, busy))
    return tuple(found)


def find(root: Path, own: Path, name: str) -> Path:
    """The other endpoint directory called ``name`` (as listed); ValueError naming the choices."""
    listed = others(root, own)
    for other in listed:
        if name in (other.name, other.endpoint):
            return root / other.name
    choices = ", ".join(o.name for o in listed) or "none"
    raise ValueError(f"no other journal named {name!r}; journals with undelivered events: {choices}")


def discard(directory: Path) -> int:
    """Delete the journals in ``directory`` that no running process holds; how many events they had."""
    dropped = 0
    for path in directory.glob(f"*{SUFFIX}"):
        if entry_problem(path) is not None:
            continue
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if not lock(fd):
                    continue
                with os.fdopen(os.dup(fd), "rb") as file:
                    dropped += len(read_journal(file.read()).pending)
                os.unlink(path)
            finally:
                os.close(fd)
    return dropped


def _size(n: int) -> str:
    if n < 1000:
        return f"{n:,} bytes"
    return f"{n / 1e3:.1f} KB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

