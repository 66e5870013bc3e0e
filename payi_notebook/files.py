"""Private files and directories: what we write under the data dir holds prompts and responses.

Modes are set explicitly after creation (``fchmod``/``chmod``), so they are 0600/0700
whatever the process's umask; ``mkdir(mode=...)`` alone is masked by it, and
``Path.mkdir(parents=True)`` gives parents the default mode.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str], *, ours: bool = False) -> Path:
    """Create ``path`` and its missing parents as 0700; with ``ours`` an existing ``path`` is made 0700.

    Existing parents are left as they are (they may be the user's own directories).
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            pass
        os.chmod(directory, DIR_MODE)
    if ours and not missing:
        with contextlib.suppress(PermissionError):  # someone else's directory: theirs to keep
            os.chmod(path, DIR_MODE)
    return path


def private_open(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT | O_CLOEXEC)`` with the file 0600 (also one that existed)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists and is 0600 (SQLite then gives its -wal/-shm files the same mode)."""
    os.close(private_open(path, os.O_RDONLY))
    return Path(path)
