"""A forked child gets a journal and a delivery thread of its own; the parent's are left alone.

Runs in the child right after ``fork()``, when only the forking thread survives and locks
held by the parent's other threads stay held, so everything with a lock is new. The
parent's flusher, ledger and sandbox handle are kept but never used (closing their files or
sockets here could disturb the parent's). The new flusher starts with the first event; a
multiprocessing child drains it as it exits, and whatever it could not send its parent
takes over from its journal once it has ended (``Session.adopt_orphans``).
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import Session

_inherited: list[Any] = []  # in a forked child: the parent's objects, kept alive and never used


def in_child(session: Session) -> None:
    """Give ``session`` (the child's copy) fresh locks, ledger and flusher."""
    from .ledger import Ledger

    session._lock = threading.RLock()
    session.children = False
    session.call_listeners, session.flush_participants = [], []  # the parent's (its Dask workers, say)
    if session.flusher is None:
        return
    _inherited.append((session.flusher, session.ledger, session.sandbox))
    session.flusher.release_after_fork()
    session.sandbox = None
    session.ledger = Ledger()
    session._last_ref = None
    session.flusher = session._new_flusher(adopt=False)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:  # its bootstrap clears finalizers after fork, then runs these
        mp_util.register_after_fork(session, drain_at_process_exit)


def drain_at_process_exit(session: Session) -> None:
    """Deliver what a multiprocessing child captured as it exits (it skips ``atexit``)."""
    from multiprocessing import util

    util.Finalize(session, session.stop, exitpriority=10)
