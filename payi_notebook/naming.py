"""The default use case name: the notebook's (or script's) own name, never a temp file's.

Kernels do not know their notebook in general. Front ends that say so: VS Code puts the
path in ``__vsc_ipynb_file__``; Jupyter Server (2.x) sets ``JPY_SESSION_NAME`` in the
kernel's environment. A plain script is named by ``sys.argv[0]``. Otherwise there is no
default, and calls carry no use case unless one is given.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_LAUNCHERS = ("ipykernel_launcher", "ipykernel", "__main__", "pytest", "ipython", "jupyter")


def sanitize(name: str) -> str | None:
    """A valid Pay-i use case name from a file name: stem, invalid runs → ``_``, ≤ 64 chars."""
    stem = PurePath(name).name
    for suffix in (".ipynb", ".py"):
        stem = stem.removesuffix(suffix)
    cleaned = _INVALID.sub("_", stem).strip("_.-")[:64]
    return cleaned or None


def notebook_name(user_ns: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The running notebook's name if the front end tells the kernel, else None."""
    environ = os.environ if environ is None else environ
    vscode = (user_ns or {}).get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and vscode.endswith(".ipynb"):
        return sanitize(vscode)
    session = environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb"):
        return sanitize(session)
    return None


def script_name(argv: list[str] | None = None) -> str | None:
    """The script's name for plain Python (``python job.py``), else None."""
    argv = sys.argv if argv is None else argv
    if not argv or not argv[0] or argv[0] in ("-c", "-m", "-"):
        return None
    path = PurePath(argv[0])
    if path.suffix != ".py" or any(launcher in path.name for launcher in _LAUNCHERS):
        return None
    return sanitize(path.name)
