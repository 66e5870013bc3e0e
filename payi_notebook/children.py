"""Child processes that track their calls as the scope they were started from.

A forked child needs nothing: the at-fork hook in ``session.py`` gives it a journal and a
delivery thread of its own, and it keeps the scope of the thread that forked. A child that
starts a fresh interpreter (``spawn``, ``forkserver``, and workers of other engines) knows
nothing of its parent, so it is set up with one engine-neutral call, made in the child::

    ProcessPoolExecutor(initializer=pn.child_init, initargs=(pn.child_state(),))

``child_state()`` (in the parent) captures, as a small picklable value, where events go and
what the current scope is; ``child_init(state)`` (in the child) starts capture for that
endpoint and makes the scope the process's ambient one (``tracking.set_ambient``), for calls
from any of its threads. The same
pair serves any engine that runs a setup function in its workers. The Pay-i key travels only
when the child could not read it from ``PAYI_API_KEY``, and never shows in a repr.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tracking
from .context import Context
from .endpoint import Endpoint
from .forking import drain_at_process_exit
from .secret import Secret
from .session import get_session
from .tracking import TrackingScope


class KeyInTransit:
    """The Pay-i key on its way to a child that cannot read it from its environment.

    Unlike a ``Secret`` it pickles (that is its one job); like one, no repr, ``str`` or
    ``vars()`` shows it. The child turns it back into a ``Secret`` at once.
    """

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "KeyInTransit(***)"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class ChildState:
    """What a child process needs to track its calls like its parent's scope (see ``child_state``)."""

    base_url: str
    endpoint_kind: str
    endpoint_key: str  # which journal directory: the parent's, so it can take over what a child leaves
    spool_dir: str
    providers: tuple[tuple[str, tuple[str, ...]], ...]
    mode: str
    log_prompt_and_response: bool
    exit_timeout: float
    root: dict[str, Any]  # the base context of ``pn.track`` in the child
    context: dict[str, Any] | None  # the scope's context; None: made outside any scope
    execution_count: int | None
    cell_id: str | None
    parent_pid: int
    api_key: KeyInTransit | None = None  # None: the child reads PAYI_API_KEY from its environment

    def __repr__(self) -> str:
        scope = "no scope" if self.context is None else f"use_case_name={self.context.get('use_case_name')!r}"
        key = "PAYI_API_KEY from the environment" if self.api_key is None else "api_key=***"
        return f"ChildState({self.endpoint_kind} at {self.base_url}, {scope}, {key})"

    def scope(self) -> TrackingScope | None:
        """The scope the child's calls are made in."""
        if self.context is None:
            return None
        return TrackingScope(
            context=Context.from_json(self.context),
            execution_count=self.execution_count,
            cell_id=self.cell_id,
            quiet=True,
        )


def child_state() -> ChildState:
    """The state ``child_init`` needs, for the current scope (call it where the pool is created)."""
    session = get_session().start()
    endpoint = session.endpoint
    assert endpoint is not None
    session.children = True  # their journals are looked for after each cell
    scope = tracking.current()
    in_env = endpoint.api_key == os.environ.get("PAYI_API_KEY", "").strip()
    settings = session.settings
    return ChildState(
        base_url=endpoint.base_url,
        endpoint_kind=endpoint.kind,
        endpoint_key=endpoint.key,
        spool_dir=str(Path(session.spool_root()).resolve()),
        providers=tuple((provider, tuple(urls)) for provider, urls in settings.providers.items()),
        mode=settings.mode,
        log_prompt_and_response=settings.log_prompt_and_response,
        exit_timeout=settings.exit_timeout,
        root=session.root_context().to_json(),
        context=scope.context.to_json() if scope is not None else None,
        execution_count=scope.execution_count if scope is not None else None,
        cell_id=scope.cell_id if scope is not None else None,
        parent_pid=os.getpid(),
        api_key=None if in_env else KeyInTransit(endpoint.api_key.reveal()),
    )


def child_init(state: ChildState) -> None:
    """Make this (child) process capture its calls like the scope ``state`` was made in.

    Starts capture for the parent's endpoint (no sandbox of its own; its journal goes beside
    the parent's, which takes over what the child leaves unsent) and makes the scope the one
    every thread of this process calls in. A forked child is already capturing: only the
    scope is set. A multiprocessing child drains its events as it exits.
    """
    if not isinstance(state, ChildState):
        raise TypeError(f"pn.child_init needs the state pn.child_state() returns, got {type(state).__name__}")
    if os.getpid() == state.parent_pid:
        raise RuntimeError("pn.child_init sets up a child process: pass it as the pool's initializer, do not call it here")
    session = get_session()
    if not session.started:
        key = state.api_key.value if state.api_key is not None else os.environ.get("PAYI_API_KEY", "").strip()
        if not key:
            raise RuntimeError("this child process has no Pay-i key: set PAYI_API_KEY in its environment")
        settings = session.settings
        with settings.hold_trait_notifications():
            settings.api_key = key
            settings.base_url = state.base_url
            settings.mode = state.mode
            settings.log_prompt_and_response = state.log_prompt_and_response
            settings.providers = {provider: list(urls) for provider, urls in state.providers}
            settings.spool_dir = state.spool_dir
            settings.exit_timeout = state.exit_timeout
        session.set_root_context(Context.from_json(state.root))
        session.start(Endpoint(state.endpoint_kind, state.base_url, Secret(key), state.endpoint_key))
        mp = sys.modules.get("multiprocessing")
        if mp is not None and mp.parent_process() is not None:  # it leaves by os._exit, skipping atexit
            drain_at_process_exit(session)
    scope = state.scope()
    if scope is not None:
        tracking.set_ambient(lambda: scope)
