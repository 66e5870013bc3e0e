"""A durable journal of events waiting for Pay-i: nothing lost, nothing sent twice.

Layout: ``<root>/<endpoint dir>/<pid>-<random>.jsonl``, one file per live process, held
under an exclusive ``fcntl.flock`` for the process's lifetime. Lines (compact JSON, each
starting with its format version, see ``spool_format.py``):

- ``{"v":1,"op":"event","id":<event_id>,"body":<IngestRequest>,"headers":<xProxy-* headers>}``
  written before the user's call returns, into a shared memory map of the file: the bytes
  are in the OS page cache at once, so they survive a killed process (no fsync per call),
  and no system call is made, so the user's thread never gives up the GIL here (a
  ``write(2)`` would hand it to the flusher thread mid-call). The body holds ``category``
  and ``provider_response_id``, the keys Pay-i de-duplicates on. Never the API key.
- ``{"v":1,"op":"call","id":<event_id>,"call":<raw captured call>}`` instead, for a call whose
  event capture builds later (the raw request and response it holds are what Pay-i will be
  sent anyway); the flusher rebuilds the event from it when it recovers the line.
- ``{"v":1,"op":"ack","id":<event_id>,"outcome":"sent"|"failed"}`` once an event is settled.

The file grows in chunks whose disk blocks are reserved (``posix_fallocate``) before they
are mapped: a write into a sparse map on a full disk would be a SIGBUS, a reservation that
fails is an ``OSError`` (``SpoolFull``). Then the spool is *full*: lines that do not fit are
refused (the flusher keeps those events in memory and still sends them) and the reservation
is tried again at most every ``RETRY_S`` seconds, so journalling resumes once space returns.

A file whose lock can be taken has no live owner (crashed, killed, or stopped with events
left). ``adopt()`` journals its unacknowledged events into this process's own file, then
deletes it, so each pending event is re-sent by exactly one process, with the same
``provider_response_id``. Lines that cannot be trusted go to the quarantine file, never into
our journal; an entry that cannot be read (a directory, no permission) is skipped and
reported. When everything in a large file is acknowledged it is truncated; a large file
with few live events is rewritten. Endpoint directories keep one Pay-i service's events
away from another's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from ..files import private_dir
from .places import SUFFIX, TMP_SUFFIX, claim, entry_problem, sweep_tmp
from .spool_format import VERSION, BadLine, SpoolRecord, parse_lines, quarantine, read_journal

__all__ = ["Spool", "SpoolFull", "SpoolRecord", "parse_lines"]

DEFAULT_COMPACT_BYTES = 4 << 20
CHUNK_BYTES = 1 << 20  # the mapped file grows by at least this much at a time
AHEAD_BYTES = 4 << 20  # the sender keeps this much room reserved ahead, so appends never remap
RETRY_S = 1.0  # a full spool tries to reserve space again at most this often
_PAGE = mmap.PAGESIZE

_encode = orjson.dumps  # compact JSON as bytes; several times faster than json on the hot path
_V = b'{"v":%d,' % VERSION
_EVENT = _V + b'"op":"event","id":%b,"body":%b,"headers":%b}\n'
_CALL = _V + b'"op":"call","id":%b,"call":%b}\n'
_ACK = _V + b'"op":"ack","id":%b,"outcome":%b}\n'


class SpoolFull(OSError):
    """The disk refused to reserve room for more journal lines (the line was not written)."""


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _mapped(fd: int, size: int) -> mmap.mmap | None:
    """A shared map of the first ``size`` bytes (already reserved); None where mapping fails."""
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError):
        return None


class Spool:
    """This process's journal in one endpoint directory. Thread-safe; ``append`` is the hot path."""

    def __init__(self, directory: str | os.PathLike[str], *, compact_bytes: int = DEFAULT_COMPACT_BYTES) -> None:
        self.directory = Path(directory)
        self.compact_bytes = compact_bytes
        self.path: Path | None = None
        self.full: str | None = None  # why the disk refused room; None while journalling works
        self.torn = 0  # adopted lines that were not JSON (a kill mid-write, garbage)
        self.invalid: list[str] = []  # adopted lines of the wrong shape: "file line N: reason"
        self.quarantine_path: Path | None = None
        self.skipped: dict[str, str] = {}  # entries that could not be adopted, and why
        self._fd = -1
        self._size = 0  # bytes of lines written
        self._capacity = 0  # bytes reserved on disk (and mapped)
        self._map: mmap.mmap | None = None
        self._plain = False  # the file system cannot map files: plain writes
        self._retry_at = 0.0
        self._held: list[bytes] = []  # ack lines a full disk refused, written with the next line that fits
        self._live: dict[str, bytes] = {}
        self._live_bytes = 0
        self._adopted: set[str] = set()
        self._lock = threading.Lock()
        self._headers_cache: tuple[Mapping[str, str] | None, bytes] = (None, b"")

    @property
    def written(self) -> int:
        """Bytes of journal lines in the current file (the reserved file beyond them is zeros)."""
        return self._size

    @property
    def outstanding(self) -> int:
        """Events journalled here and not yet acknowledged."""
        return len(self._live)

    @property
    def unreadable_lines(self) -> int:
        """Adopted lines that could not be trusted (all of them are in the quarantine file)."""
        return self.torn + len(self.invalid)

    def open(self) -> None:
        """Create and lock this process's file (locked before it is visible to adopters).

        A disk with no room for even one page still opens: the spool starts out ``full``.
        """
        private_dir(self.directory, ours=True)  # prompts may be in here
        self._fd, self.path = self._create()
        self._size = self._capacity = 0
        with contextlib.suppress(SpoolFull):
            self._grow(0)

    def _create(self) -> tuple[int, Path]:
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{name}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.directory / f"{name}{SUFFIX}"
        os.rename(tmp, path)
        return fd, path

    def _grow(self, end: int) -> None:
        """Reserve disk blocks so the file holds ``end`` bytes, then map them; SpoolFull if refused."""
        now = time.monotonic()
        if self.full is not None and now < self._retry_at:
            raise SpoolFull(errno.ENOSPC, self.full)
        start = self._capacity
        size = max(end, start + CHUNK_BYTES)
        least = max(-(-end // _PAGE) * _PAGE, start + _PAGE)  # room for just this line
        try:
            try:
                os.posix_fallocate(self._fd, start, size - start)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or least >= size:
                    raise
                size = least
                os.posix_fallocate(self._fd, start, size - start)
        except OSError as exc:
            self.full = f"{exc.strerror or exc} in {self.directory}"
            self._retry_at = now + RETRY_S
            raise SpoolFull(exc.errno or errno.ENOSPC, self.full) from exc
        self.full = None
        self._remap(size)

    def _remap(self, size: int) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._capacity = size
        if not self._plain:
            self._map = _mapped(self._fd, size)
            self._plain = self._map is None

    def reserve_ahead(self, room: int = AHEAD_BYTES) -> None:
        """Off the hot path (the sender thread): keep ``room`` bytes reserved and mapped past the
        written ones, so a caller's ``append`` finds the map large enough and never remaps.

        A disk that refuses is left for ``append`` to meet and report (``full``).
        """
        with self._lock:
            if self._fd < 0 or self.full is not None or self._capacity - self._size >= room:
                return
            size = self._size + 2 * room
            try:
                os.posix_fallocate(self._fd, self._capacity, size - self._capacity)
            except OSError:
                return
            self._remap(size)

    def _put(self, line: bytes) -> None:
        """Append ``line`` at the end of the written bytes (caller holds the lock)."""
        held = self._held
        if held:
            line = b"".join(held) + line
        end = self._size + len(line)
        if end > self._capacity:
            self._grow(end)
        if self._map is not None:
            self._map[self._size : end] = line
        else:
            _write_all(self._fd, line, self._size)
        self._size = end
        if held:
            held.clear()

    def append(self, event_id: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        """Journal one pending event; returns once the line is in the OS (``SpoolFull`` if no room)."""
        cached, encoded = self._headers_cache  # one context's headers are shared by many events
        if cached is not headers:
            encoded = _encode(headers)
            self._headers_cache = (headers, encoded)
        self._journal(event_id, _EVENT % (_encode(event_id), _encode(body), encoded))

    def append_call(self, event_id: str, call: Mapping[str, Any]) -> None:
        """Journal one pending call captured raw (its event is built later); returns once in the OS."""
        self._journal(event_id, _CALL % (_encode(event_id), _encode(call)))

    def _journal(self, event_id: str, line: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                raise RuntimeError("the spool is closed")
            self._put(line)
            self._live[event_id] = line
            self._live_bytes += len(line)

    def ack(self, event_id: str, outcome: str) -> None:
        """Mark an event settled (``sent`` or ``failed``); compacts a large, mostly settled file.

        On a full disk the ack line is held and written with the next line that fits.
        """
        line = _ACK % (_encode(event_id), _encode(outcome))
        with self._lock:
            if self._fd < 0 or event_id not in self._live:
                return
            self._live_bytes -= len(self._live.pop(event_id))
            try:
                self._put(line)
            except SpoolFull:
                self._held.append(line)
                return
            if self._size >= self.compact_bytes and self._live_bytes * 4 < self._size:
                with contextlib.suppress(SpoolFull):
                    self._compact()

    def retry(self) -> bool:
        """A full spool tries to reserve room again (off the hot path); True when it has room."""
        with self._lock:
            if self.full is None or self._fd < 0:
                return self.full is None
            with contextlib.suppress(SpoolFull):
                self._grow(self._size + sum(map(len, self._held)) + 1)
                if self._held:
                    self._put(b"")
            return self.full is None

    def _compact(self) -> None:
        if not self._live:
            self._unmap()
            os.ftruncate(self._fd, 0)  # drop every byte, so nothing stale is read back later
            self._size = self._capacity = 0
            self._grow(0)
            return
        old_fd, old_path = self._fd, self.path
        fd, path = self._create()
        data = b"".join(self._live.values())
        try:
            os.posix_fallocate(fd, 0, len(data) + CHUNK_BYTES)
        except OSError:  # no room for a rewrite: keep the file we have
            os.unlink(path)
            os.close(fd)
            return
        self._unmap()
        self._held.clear()  # acks of events the rewrite leaves out anyway
        self._fd, self.path, self._size, self._capacity = fd, path, 0, len(data) + CHUNK_BYTES
        if not self._plain:
            self._map = _mapped(fd, self._capacity)
            self._plain = self._map is None
        self._put(data)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old_path)  # type: ignore[arg-type]
        os.close(old_fd)

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def adopt(
        self, prepare: Callable[[SpoolRecord], object] | None = None, source: str | os.PathLike[str] | None = None
    ) -> list[SpoolRecord]:
        """Take over the pending events of every spool file with no live owner (in ``source``,
        default this spool's directory).

        ``prepare`` is called on each record before it is taken; if it raises, the record is
        quarantined like a bad line. A file is deleted once its events are in our journal; on a
        full disk the rest stays where it is (``retry()`` and a later ``adopt()`` take it then).
        """
        directory = Path(source) if source is not None else self.directory
        taken: dict[str, SpoolRecord] = {}
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            if path == self.path:
                continue
            problem = entry_problem(path)
            if problem is not None:
                self.skipped[str(path)] = problem
                continue
            try:
                if not self._adopt_file(path, prepare, taken):
                    break  # the disk is full
            except OSError as exc:
                self.skipped[str(path)] = f"cannot be adopted: {exc.strerror or exc}"
            else:
                self.skipped.pop(str(path), None)
        sweep_tmp(directory)
        return list(taken.values())

    def _adopt_file(self, path: Path, prepare: Callable[[SpoolRecord], object] | None, taken: dict[str, SpoolRecord]) -> bool:
        """Adopt one file; False if the disk filled up meanwhile (the file is kept)."""
        with claim(path) as data:
            if data is None:
                return True
            journal = read_journal(data)
            bad = list(journal.bad)
            fresh: list[SpoolRecord] = []
            for record in journal.pending.values():
                if record.event_id in self._live or record.event_id in taken or record.event_id in self._adopted:
                    continue
                try:
                    if prepare is not None:
                        prepare(record)
                except Exception as exc:
                    bad.append(BadLine(0, f"event {record.event_id} cannot be rebuilt: {exc!r}", _line_of(record)))
                    continue
                fresh.append(record)
            if bad:
                self.quarantine_path = quarantine(self.directory, path.name, bad)
                self.torn += sum(b.torn for b in bad)
                self.invalid += [f"{path.name} line {b.number or '?'}: {b.reason}" for b in bad if not b.torn]
            for record in fresh:
                try:
                    if record.call is not None:
                        self.append_call(record.event_id, record.call)
                    else:
                        self.append(record.event_id, record.body, record.headers)  # type: ignore[arg-type]
                except SpoolFull:
                    return False
                taken[record.event_id] = record
                self._adopted.add(record.event_id)
            os.unlink(path)
        return True

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
                with contextlib.suppress(OSError):
                    if self._held:
                        _write_all(self._fd, b"".join(self._held), self._size)
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
            elif self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1
            self._live.clear()
            self._live_bytes = 0
            return left

    def release_after_fork(self) -> None:
        """In a forked child: let go of the parent's file without touching it.

        The child's copy of the mapping and of the descriptor are dropped; nothing is written,
        truncated, unlinked or unlocked (the lock is the parent's open file's, and stays held).
        The thread lock is not taken: another thread of the parent may have held it at the fork.
        """
        mapped, self._map = self._map, None
        if mapped is not None:
            with contextlib.suppress(OSError, ValueError):
                mapped.close()
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1
        self._live = {}
        self._live_bytes = 0

    def __repr__(self) -> str:
        return f"Spool(path={str(self.path)!r}, outstanding={self.outstanding})"


def _line_of(record: SpoolRecord) -> bytes:
    """A record as the journal line it was read from (for the quarantine file)."""
    if record.call is not None:
        return _CALL % (_encode(record.event_id), _encode(record.call))
    return _EVENT % (_encode(record.event_id), _encode(record.body), _encode(record.headers))
