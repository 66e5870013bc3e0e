"""A durable journal of events waiting for Pay-i: nothing lost, nothing sent twice.

Layout: ``<root>/<endpoint dir>/<pid>-<random>.jsonl``, one file per live process, held
under an exclusive ``fcntl.flock`` for the process's lifetime. Lines (compact JSON):

- ``{"op":"event","id":<event_id>,"body":<IngestRequest>,"headers":<xProxy-* headers>}``
  written before the user's call returns, into a shared memory map of the file: the bytes
  are in the OS page cache at once, so they survive a killed process (no fsync per call),
  and no system call is made, so the user's thread never gives up the GIL here (a
  ``write(2)`` would hand it to the flusher thread mid-call). The file grows in chunks
  and its unused tail is zeros. The body holds ``category`` and
  ``provider_response_id``, the keys Pay-i de-duplicates on. Never the API key.
- ``{"op":"call","id":<event_id>,"call":<raw captured call>}`` instead, for a call whose
  event capture builds later (the raw request and response it holds are what Pay-i will be
  sent anyway); the flusher rebuilds the event from it when it recovers the line.
- ``{"op":"ack","id":<event_id>,"outcome":"sent"|"failed"}`` once an event is settled.

A file whose lock can be taken has no live owner (crashed, killed, or stopped with events
left). ``adopt()`` journals its unacknowledged events into this process's own file, then
deletes it, so each pending event is re-sent by exactly one process, with the same
``provider_response_id``. A torn last line (a kill mid-write) is skipped. When everything
in a large file is acknowledged it is truncated; a large file with few live events is
rewritten. Endpoint directories keep events for one Pay-i service away from another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
import platformdirs

SUFFIX = ".jsonl"
TMP_SUFFIX = ".tmp"
DEFAULT_COMPACT_BYTES = 4 << 20
CHUNK_BYTES = 1 << 20  # the mapped file grows by at least this much at a time

_encode = orjson.dumps  # compact JSON as bytes; several times faster than json on the hot path
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


class SpoolRecord(NamedTuple):
    """What re-sending one event needs: its ingest body and headers, or the raw captured call
    (``call``) that capture turns back into an event (``body``/``headers`` are then None)."""

    event_id: str
    body: dict[str, Any] | None
    headers: dict[str, str] | None
    call: dict[str, Any] | None = None


def default_root() -> Path:
    """``<user data dir>/payi_notebook/spool``."""
    return Path(platformdirs.user_data_dir("payi_notebook")) / "spool"


def endpoint_key_for(base_url: str) -> str:
    """A stable key for a Pay-i endpoint: its URL without credentials, query or trailing slash."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


def endpoint_dir(root: str | os.PathLike[str] | None, endpoint_key: str) -> Path:
    """The directory holding the spools of one endpoint: a readable slug plus a hash of the key."""
    digest = hashlib.sha256(endpoint_key.encode()).hexdigest()[:12]
    slug = _SLUG.sub("-", endpoint_key).strip("-")[:48] or "endpoint"
    return Path(root if root is not None else default_root()) / f"{slug}-{digest}"


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _map(fd: int, size: int) -> mmap.mmap | None:
    """Grow the file to ``size`` (zero-filled) and map it shared; None where mapping fails."""
    os.ftruncate(fd, size)
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError):
        return None


def parse_lines(data: bytes) -> tuple[dict[str, SpoolRecord], int]:
    """Unacknowledged events in a spool file's bytes, and how many lines were unreadable."""
    pending: dict[str, SpoolRecord] = {}
    bad = 0
    for raw in data.rstrip(b"\x00").split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            op, event_id = line["op"], line["id"]
            if op == "event":
                pending[event_id] = SpoolRecord(event_id, dict(line["body"]), dict(line["headers"]))
            elif op == "call":
                pending[event_id] = SpoolRecord(event_id, None, None, dict(line["call"]))
            elif op == "ack":
                pending.pop(event_id, None)
        except (ValueError, KeyError, TypeError):
            bad += 1
    return pending, bad


class Spool:
    """This process's journal in one endpoint directory. Thread-safe; ``append`` is the hot path."""

    def __init__(self, directory: str | os.PathLike[str], *, compact_bytes: int = DEFAULT_COMPACT_BYTES) -> None:
        self.directory = Path(directory)
        self.compact_bytes = compact_bytes
        self.path: Path | None = None
        self.unreadable_lines = 0
        self._fd = -1
        self._size = 0  # bytes of lines written
        self._map: mmap.mmap | None = None  # None: plain writes (a file system without mmap)
        self._live: dict[str, bytes] = {}
        self._live_bytes = 0
        self._lock = threading.Lock()
        self._headers_cache: tuple[Mapping[str, str] | None, bytes] = (None, b"")

    @property
    def written(self) -> int:
        """Bytes of journal lines in the current file (the mapped file beyond them is zeros)."""
        return self._size

    @property
    def outstanding(self) -> int:
        """Events journalled here and not yet acknowledged."""
        return len(self._live)

    def open(self) -> None:
        """Create and lock this process's file (locked before it is visible to adopters)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # prompts may be in here
        self._fd, self.path = self._create()
        self._size = 0
        self._map = _map(self._fd, CHUNK_BYTES)

    def _create(self) -> tuple[int, Path]:
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{name}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.directory / f"{name}{SUFFIX}"
        os.rename(tmp, path)
        return fd, path

    def _put(self, line: bytes) -> None:
        """Append ``line`` at the end of the written bytes (caller holds the lock)."""
        end = self._size + len(line)
        if self._map is None:
            _write_all(self._fd, line, self._size)
        else:
            if end > len(self._map):
                size = max(end, len(self._map) + CHUNK_BYTES)
                self._map.close()
                self._map = _map(self._fd, size)
            self._map[self._size : end] = line
        self._size = end

    def append(self, event_id: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        """Journal one pending event; returns once the line is in the OS."""
        cached, encoded = self._headers_cache  # one context's headers are shared by many events
        if cached is not headers:
            encoded = _encode(headers)
            self._headers_cache = (headers, encoded)
        self._journal(event_id, b'{"op":"event","id":%b,"body":%b,"headers":%b}\n' % (_encode(event_id), _encode(body), encoded))

    def append_call(self, event_id: str, call: Mapping[str, Any]) -> None:
        """Journal one pending call captured raw (its event is built later); returns once in the OS."""
        self._journal(event_id, b'{"op":"call","id":%b,"call":%b}\n' % (_encode(event_id), _encode(call)))

    def _journal(self, event_id: str, line: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                raise RuntimeError("the spool is closed")
            self._put(line)
            self._live[event_id] = line
            self._live_bytes += len(line)

    def ack(self, event_id: str, outcome: str) -> None:
        """Mark an event settled (``sent`` or ``failed``); compacts a large, mostly settled file."""
        line = b'{"op":"ack","id":%b,"outcome":%b}\n' % (_encode(event_id), _encode(outcome))
        with self._lock:
            if self._fd < 0 or event_id not in self._live:
                return
            self._put(line)
            self._live_bytes -= len(self._live.pop(event_id))
            if self._size >= self.compact_bytes and self._live_bytes * 4 < self._size:
                self._compact()

    def _compact(self) -> None:
        self._unmap()
        if not self._live:
            os.ftruncate(self._fd, 0)  # drop every byte, so nothing stale is read back later
            self._size = 0
            self._map = _map(self._fd, CHUNK_BYTES)
            return
        old_fd, old_path = self._fd, self.path
        fd, path = self._create()
        data = b"".join(self._live.values())
        self._fd, self.path, self._size = fd, path, 0
        self._map = _map(fd, len(data) + CHUNK_BYTES)
        self._put(data)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old_path)  # type: ignore[arg-type]
        os.close(old_fd)

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def adopt(self) -> list[SpoolRecord]:
        """Take over the pending events of every spool file in the directory with no live owner."""
        taken: dict[str, SpoolRecord] = {}
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if path == self.path:
                continue
            with self._claim(path) as data:
                if data is None:
                    continue
                pending, bad = parse_lines(data)
                self.unreadable_lines += bad
                fresh = [r for r in pending.values() if r.event_id not in self._live and r.event_id not in taken]
                for record in fresh:
                    if record.call is not None:
                        self.append_call(record.event_id, record.call)
                    else:
                        self.append(record.event_id, record.body, record.headers)  # type: ignore[arg-type]
                    taken[record.event_id] = record
                os.unlink(path)
        self._sweep_tmp()
        return list(taken.values())

    @contextlib.contextmanager
    def _claim(self, path: Path) -> Iterator[bytes | None]:
        """The bytes of ``path`` while holding its lock, or None if its owner is alive or it is gone."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        try:
            if not _lock(fd):
                yield None
                return
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # another adopter took and removed it between our open and our lock
                yield None
                return
            with os.fdopen(os.dup(fd), "rb") as file:
                data = file.read()
            yield data
        finally:
            os.close(fd)

    def _sweep_tmp(self) -> None:
        """Remove half-created files of dead processes (they never held events)."""
        for path in self.directory.glob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _lock(fd):
                        os.unlink(path)
                finally:
                    os.close(fd)

    def close(self) -> int:
        """Release the file: deleted when everything is acknowledged, else left (synced) for the next start.

        Returns how many events were left in it.
        """
        with self._lock:
            if self._fd < 0:
                return 0
            left = len(self._live)
            self._unmap()
            if left:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)  # no zero tail in a file left for later
                    os.fsync(self._fd)
            elif self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1
            self._live.clear()
            self._live_bytes = 0
            return left

    def __repr__(self) -> str:
        return f"Spool(path={str(self.path)!r}, outstanding={self.outstanding})"
