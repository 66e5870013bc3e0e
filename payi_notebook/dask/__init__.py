"""LLM calls in Dask workers, attributed to the notebook cell that submitted them.

``pn.dask.instrument(client)`` once per ``distributed.Client``: every current and future worker
captures its provider calls, each worker journals and sends its own events to the session's
Pay-i endpoint (or sandbox), tasks submitted inside a ``%%payi`` cell carry that cell's context,
and the workers' rows stream back into ``pn.ledger()`` (column ``worker``). ``pn.flush()`` waits
for the workers' deliveries too.
"""

from __future__ import annotations

from typing import Any

from ..session import get_session

__all__ = ["instrument", "uninstrument"]

_instrumented: dict[int, Any] = {}


def instrument(client: Any) -> None:
    """Capture the LLM calls of ``client``'s workers (idempotent)."""
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("pn.dask needs Dask's distributed scheduler: pip install 'payi_notebook[dask]'") from None
    from .cluster import Instrumented

    if not isinstance(client, Client):
        raise TypeError(f"pn.dask.instrument needs a distributed.Client, got {type(client).__name__}")
    if id(client) in _instrumented:
        return
    session = get_session().start()
    hooked = Instrumented(client, session)
    hooked.install()
    _instrumented[id(client)] = hooked


def uninstrument(client: Any) -> None:
    """Undo ``instrument``: workers stop capturing (after delivering what they hold)."""
    hooked = _instrumented.pop(id(client), None)
    if hooked is not None:
        hooked.uninstall()
