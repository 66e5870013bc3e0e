"""The notebook side: tag submitted graphs with the scope, take the workers' rows into the ledger.

Every graph a ``distributed.Client`` sends goes through one method, ``_graph_to_futures``,
which merges ``dask.get_annotations()`` into the whole graph. Wrapping it on the instrumented
client (that instance only) puts the current tracking scope's payload under the ``payi``
annotation, so every way of submitting work — ``submit``/``map``, ``compute`` of delayed
objects, DataFrames and bags, graphs built before the cell — carries the cell's context, and
nothing outside a scope is tagged. Workers send their rows back on one event-log topic.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import replace
from typing import Any

import dask

from .. import tracking
from ..children import child_state
from ..context import Context
from ..delivery import FlushReport
from ..ledger import RowRef
from ..session import Session
from ..tracking import TrackingScope
from .budgets import PLUGIN_NAME as BUDGETS_PLUGIN
from .budgets import Moved, PayiBudgets, share
from .payload import ANNOTATION, TOPIC, event_from_row, scope_payload
from .plugin import PLUGIN_NAME, PayiWorkerPlugin
from .worker import flush_worker

log = logging.getLogger("payi_notebook.dask")


class Instrumented:
    """One instrumented client: its submission wrapper, its row subscription, its flush participant."""

    def __init__(self, client: Any, session: Session) -> None:
        self.client = client
        self.session = session
        self.rows: dict[str, RowRef] = {}  # event id -> this ledger's row
        self.early: dict[str, dict[str, Any]] = {}  # changes that came before their row
        self.unsettled: set[str] = set()
        self.scopes: weakref.WeakValueDictionary[str, TrackingScope] = weakref.WeakValueDictionary()
        self.contexts: dict[str, Context] = {}  # one Context per scope token: rows of a cell share it
        self._lock = threading.Lock()
        self._original = client._graph_to_futures
        self.moved: Moved = weakref.WeakKeyDictionary()  # the scopes' budgets now kept by the scheduler

    def install(self) -> None:
        # where events go and how to capture, for a worker to start like a child process (no
        # fixed scope: each task brings its own in its annotation)
        state = replace(child_state(), context=None, execution_count=None, cell_id=None)
        self.client.register_plugin(PayiBudgets(), name=BUDGETS_PLUGIN)
        self.client.subscribe_topic(TOPIC, self._on_rows)
        self.client._graph_to_futures = self._submit
        self.client.register_plugin(PayiWorkerPlugin(state), name=PLUGIN_NAME)
        self.session.flush_participants.append(self.flush)

    def uninstall(self) -> None:
        self.client.__dict__.pop("_graph_to_futures", None)
        self.client.unsubscribe_topic(TOPIC)
        try:
            self.client.unregister_worker_plugin(PLUGIN_NAME)
        except Exception as exc:  # a closed cluster: nothing left to undo there
            log.debug("payi_notebook: could not unregister the worker plugin: %s", exc)
        if self.flush in self.session.flush_participants:
            self.session.flush_participants.remove(self.flush)

    # -- submission ---------------------------------------------------------------------

    def _scheduler_call(self, op: str, **kwargs: Any) -> Any:
        return self.client.sync(getattr(self.client.scheduler, op), **kwargs)

    def _submit(self, *args: Any, **kwargs: Any) -> Any:
        scope = tracking.current()
        if scope is None:
            return self._original(*args, **kwargs)
        payload = scope_payload(scope)
        self.scopes[payload["token"]] = scope
        if scope.budgets:
            payload["budgets"] = share(scope, self._scheduler_call, self.moved)
        with dask.annotate(**{ANNOTATION: payload}):
            return self._original(*args, **kwargs)

    # -- rows back ----------------------------------------------------------------------

    def _on_rows(self, event: tuple[float, dict[str, Any]]) -> None:
        """Handler of the rows topic (on the client's event loop): append rows, apply changes."""
        try:
            _, message = event
            worker = message.get("worker")
            ledger = self.session.ledger
            for row in message.get("rows") or ():
                item = event_from_row(row, worker)
                token = row.get("scope")
                if token:
                    item.context = self.contexts.setdefault(token, item.context)
                ref = ledger.append(item)
                with self._lock:
                    self.rows[item.event_id] = ref
                    if item.status == "pending":
                        self.unsettled.add(item.event_id)
                    early = self.early.pop(item.event_id, None)
                scope = self.scopes.get(token) if token else None
                if scope is not None:
                    scope.add(ref)
                if early:
                    self._apply(item.event_id, ref, early)
            for event_id, changes in message.get("updates") or ():
                with self._lock:
                    known = self.rows.get(event_id)
                    if known is None:
                        self.early.setdefault(event_id, {}).update(changes)
                        continue
                self._apply(event_id, known, changes)
        except Exception as exc:  # never let a bad message break the client's loop
            self.session.report("a Dask worker's rows could not be read", exc)

    def _apply(self, event_id: str, ref: RowRef, changes: dict[str, Any]) -> None:
        if "limit_states" in changes and changes["limit_states"] is not None:
            changes = {**changes, "limit_states": dict(changes["limit_states"])}
        self.session.ledger.update(ref, **changes)
        if changes.get("status", "pending") != "pending":
            with self._lock:
                self.unsettled.discard(event_id)

    # -- flush --------------------------------------------------------------------------

    def flush(self, timeout: float) -> FlushReport:
        """Every worker delivers what it holds; then wait until the notebook has heard the outcomes."""
        start = time.monotonic()
        counts: dict[str, dict[str, int]] = {}
        try:
            counts = self.client.run(flush_worker, timeout)
        except Exception as exc:
            self.session.report("flushing the Dask workers failed", exc)
        deadline = start + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.unsettled:
                    break
            time.sleep(0.05)
        with self._lock:
            waiting = len(self.unsettled)
        sent = sum(c.get("sent", 0) for c in counts.values())
        failed = sum(c.get("failed", 0) for c in counts.values())
        pending = max(waiting, sum(c.get("pending", 0) for c in counts.values()))
        return FlushReport(
            sent=sent,
            failed=failed,
            pending=pending,
            in_flight=0,
            awaiting_cost=0,
            timed_out=pending > 0,
            elapsed_s=time.monotonic() - start,
            remote_processes=sum(1 for c in counts.values() if c),
        )
