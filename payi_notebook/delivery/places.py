"""Where journals live and who owns them: one directory per Pay-i endpoint, one file per live
process, each held under an exclusive ``fcntl.flock`` for the process's lifetime (a file whose
lock can be taken has no live owner and may be adopted).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

SUFFIX = ".jsonl"
TMP_SUFFIX = ".tmp"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


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


def lock(fd: int) -> bool:
    """Take ``fd``'s exclusive lock if no live process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def entry_problem(path: Path) -> str | None:
    """Why a ``*.jsonl`` entry cannot be a spool file (None: a regular file)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    return None if stat.S_ISREG(mode) else "not a regular file"


@contextlib.contextmanager
def claim(path: Path) -> Iterator[bytes | None]:
    """The bytes of ``path`` while holding its lock, or None if its owner is alive or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        if not lock(fd):
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

def sweep_tmp(directory: Path) -> None:
    """Remove half-created files of dead processes (they never held events)."""
    for path in directory.glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if lock(fd):
                    os.unlink(path)
            finally:
                os.close(fd)
