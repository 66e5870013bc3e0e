"""The worker side: capture inside Dask workers, attributed to the notebook scope that submitted the task.

``PayiWorkerPlugin.setup`` starts this process's own session (journal and delivery to the same
Pay-i endpoint as the notebook: each worker sends its own events, nothing funnels through
the notebook), makes the running task's ``payi`` annotation the ambient tracking scope, and
streams each row, and each later change to it, back to the notebook through Dask's event
log. A worker on the notebook's own process (``LocalCluster(processes=False)``) shares the
notebook's session, so it only resolves scopes.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .. import tracking
from ..children import ChildState
from ..tracking import TrackingScope
from .payload import ANNOTATION, TOPIC, row_message, scope_from_payload

log = logging.getLogger("payi_notebook.dask")

FORWARD_INTERVAL_S = 0.2  # how often rows go back to the notebook (the issue asks for ~1 s)
_SCOPES_KEPT = 256


class _Forwarder:
    """Sends this worker's new rows and row changes to the notebook, in batches, off the task threads."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self._rows: list[tuple[Callable[[], Any], str | None]] = []  # (the row's event, built on demand; scope token)
        self._updates: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="payi-dask-forwarder", daemon=True)
        self._thread.start()

    def row(self, make_event: Callable[[], Any], token: str | None) -> None:
        with self._lock:
            self._rows.append((make_event, token))

    def update(self, event_id: str, changes: dict[str, Any]) -> None:
        with self._lock:
            self._updates.append((event_id, changes))

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(FORWARD_INTERVAL_S)
            self._wake.clear()
            self.send()

    def send(self) -> None:
        """Forward what is queued now (also called at flush and teardown)."""
        with self._lock:
            rows, self._rows = self._rows, []
            updates, self._updates = self._updates, []
        if not rows and not updates:
            return
        try:
            message = {
                "rows": [row_message(make_event(), token) for make_event, token in rows],
                "updates": [[event_id, _plain(changes)] for event_id, changes in updates],
            }
            self.worker.log_event(TOPIC, message)
        except Exception:  # the notebook's view is late or incomplete; Pay-i still gets every event
            log.exception("payi_notebook: could not forward rows to the notebook")

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=2)
        self.send()


def _plain(changes: dict[str, Any]) -> dict[str, Any]:
    """Row changes as msgpack takes them (limit states arrive as tuples of pairs)."""
    return {k: (dict(v) if k == "limit_states" and v is not None else v) for k, v in changes.items()}


class _Resolver:
    """The ambient scope of a task thread: the ``payi`` annotation of the task it runs."""

    def __init__(self) -> None:
        self._scopes: OrderedDict[tuple[str, str], TrackingScope] = OrderedDict()
        self.tokens: weakref.WeakKeyDictionary[TrackingScope, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self) -> TrackingScope | None:
        from distributed.worker import get_worker, thread_state

        key = getattr(thread_state, "key", None)
        if key is None:
            return None
        try:
            worker = get_worker()
            task = worker.state.tasks.get(key)
        except (ValueError, AttributeError):
            return None
        annotations = task.annotations if task is not None else None
        payload = annotations.get(ANNOTATION) if annotations else None
        if not payload:
            return None
        cache_key = (payload["token"], worker.address)
        with self._lock:
            scope = self._scopes.get(cache_key)
            if scope is None:
                scope = scope_from_payload(payload, worker.address)
                scope.refs = _Discard()  # a worker keeps no per-scope row list: the notebook does
                if payload.get("budgets"):
                    from .budgets import on_worker

                    scope.budgets = on_worker(payload["budgets"], worker)
                self._scopes[cache_key] = scope
                self.tokens[scope] = payload["token"]
                if len(self._scopes) > _SCOPES_KEPT:
                    self._scopes.popitem(last=False)
            return scope


class _Discard(list[Any]):
    """A row list that keeps nothing (worker scopes live as long as their tasks run)."""

    def append(self, item: Any) -> None:
        pass


_resolver = _Resolver()


def token_of(scope: TrackingScope) -> str | None:
    """The notebook scope a worker scope (or one nested in it) stands for."""
    return _resolver.tokens.get(scope.root)


def setup_worker(worker: Any, state: ChildState) -> None:
    """Start capture in a worker (idempotent per process); called from ``PayiWorkerPlugin.setup``.

    The endpoint is set up by ``child_init``, the engine-neutral child setup; the scope of each
    call is then the running task's, not one fixed scope.
    """
    from ..children import child_init
    from ..session import get_session

    session = get_session()
    if os.getpid() == state.parent_pid and session.started:
        tracking.set_ambient(_resolver)
        return  # a worker thread in the notebook's own process: its session captures already
    child_init(state)
    tracking.set_ambient(_resolver)
    forwarder = _Forwarder(worker)
    worker._payi_forwarder = forwarder  # one per worker: teardown stops it
    session.call_listeners.append(lambda make_event, scope: forwarder.row(make_event, token_of(scope)))
    flusher = session.flusher
    if flusher is not None:
        flusher.on_update = forwarder.update
        flusher.adopt_orphans()  # a worker that died on this machine: its replacement sends what it left


def teardown_worker(worker: Any) -> None:
    """Stop forwarding; the session drains to Pay-i (bounded) and stops with the process."""
    tracking.set_ambient(None)
    forwarder = getattr(worker, "_payi_forwarder", None)
    if forwarder is None:
        return
    from ..session import get_session

    session = get_session()
    if session.started and session.flusher is not None:
        session.flusher.flush(10.0)
    forwarder.stop()
    session.call_listeners.clear()
    del worker._payi_forwarder


def flush_worker(timeout: float, dask_worker: Any = None) -> dict[str, int]:
    """Run on each worker by ``pn.flush()``: deliver what is pending, forward the outcomes.

    Empty for a worker in the notebook's own process (the notebook's flush covers its calls).
    """
    from ..session import get_session

    session = get_session()
    if not session.started or session.flusher is None or getattr(dask_worker, "_payi_forwarder", None) is None:
        return {}
    report = session.flusher.flush(timeout)
    dask_worker._payi_forwarder.send()
    return {"sent": report.sent, "failed": report.failed, "pending": report.pending + report.in_flight}
