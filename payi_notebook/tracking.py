"""Tracking scopes: which calls are captured, and with what context.

A scope is held in a ``ContextVar``, so it follows the work: asyncio tasks copy it, and
``install_propagation`` makes ``concurrent.futures`` thread pools (per task) and plain
threads (when started) copy it too. Outside any scope, capture lets requests
pass untouched.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.thread import _worker as _pool_worker
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .context import Context, check_options, merge

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[TrackingScope | None] = contextvars.ContextVar("payi_notebook_scope", default=None)


@dataclass(eq=False)
class TrackingScope:
    """One tracked region (a cell, a ``with pn.track()`` block, a decorated call).

    ``refs`` collects the ledger rows its calls produced (list appends are atomic, so calls
    from several threads or tasks can add to it).
    """

    context: Context
    parent: TrackingScope | None = None
    execution_count: int | None = None
    cell_id: str | None = None
    quiet: bool = False
    refs: list[Any] = field(default_factory=list)
    proxied: list[Any] | None = None  # a cell's proxied calls (refusals are explained after it); None: not kept
    worker: str | None = None  # the Dask worker running the calls (None: this process's own calls)
    budget: Any = None  # this scope's own budgets.Reserver, if it has one
    budgets: tuple[Any, ...] = ()  # every budget its calls reserve in: its own, then its parents'

    @property
    def root(self) -> TrackingScope:
        scope = self
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def add(self, ref: Any) -> None:
        """Record a row in this scope and every enclosing one (a cell's badge counts nested calls)."""
        scope: TrackingScope | None = self
        while scope is not None:
            scope.refs.append(ref)
            scope = scope.parent


ambient: Callable[[], TrackingScope | None] | None = None
"""Where a process whose work arrives from elsewhere (a Dask worker) finds the scope of the code
it is running when no scope is set in the context; None in a plain process. See ``set_ambient``."""


def set_ambient(resolver: Callable[[], TrackingScope | None] | None) -> None:
    """Install (or with None remove) the fallback that ``current`` and capture consult outside any scope."""
    global ambient
    ambient = resolver


def current() -> TrackingScope | None:
    """The innermost active scope (or the ambient one, see ``set_ambient``), or None."""
    scope = _current.get()
    if scope is None and ambient is not None:
        return ambient()
    return scope


def scope_var() -> contextvars.ContextVar[TrackingScope | None]:
    """The variable holding the current scope, for capture's hot path (one ``.get()`` per call)."""
    return _current


def enter(scope: TrackingScope) -> contextvars.Token[TrackingScope | None]:
    return _current.set(scope)


def leave(token: contextvars.Token[TrackingScope | None]) -> None:
    _current.reset(token)


def set_current(scope: TrackingScope | None) -> None:
    """Set the scope without a token: for cells, whose context may differ between hooks."""
    _current.set(scope)


def child_scope(
    base: Context,
    options: dict[str, Any],
    quiet: bool = False,
    budget: Any = None,
    *,
    cell: tuple[int | None, str | None] | None = None,
    proxied: list[Any] | None = None,
) -> TrackingScope:
    """A scope nested in the current one (or rooted at ``base``); ``options`` from ``check_options``.

    The one way scopes are opened (``pn.track`` and ``%%payi`` cells alike). ``budget`` (a
    ``budgets.Reserver``) is added to the budgets inherited from the parent; ``cell`` is the
    cell's (execution count, cell id), by default the parent's; ``proxied`` collects a cell's
    proxied calls.
    """
    parent = current()
    context = merge(parent.context if parent else base, options)
    inherited = parent.budgets if parent else ()
    if cell is None:
        cell = (parent.execution_count, parent.cell_id) if parent else (None, None)
    return TrackingScope(
        context=context,
        parent=parent,
        execution_count=cell[0],
        cell_id=cell[1],
        proxied=proxied,
        quiet=quiet or (parent.quiet if parent else False),
        worker=parent.worker if parent else None,
        budget=budget,
        budgets=(budget, *inherited) if budget is not None else inherited,
    )


class Track:
    """``pn.track(...)``: a context manager (sync and async) and a decorator (sync and async).

    Options are validated when it is created, so a bad value fails before any call runs.
    ``budget`` (USD, or any ``budgets.Reserver``) gives each entered scope (each decorated
    call) a budget of its own.
    """

    def __init__(self, base: Callable[[], Context], **options: Any) -> None:
        self._base = base
        self._quiet = bool(options.pop("quiet", False))
        self._budget = _budget_factory(options.pop("budget", None))
        self._options = check_options(**options)
        self._tokens: list[contextvars.Token[TrackingScope | None]] = []
        self.scope: TrackingScope | None = None

    def _open(self) -> TrackingScope:
        scope = child_scope(self._base(), self._options, self._quiet, self._budget())
        self._tokens.append(enter(scope))
        self.scope = scope
        return scope

    def _close(self) -> None:
        leave(self._tokens.pop())

    def __enter__(self) -> TrackingScope:
        return self._open()

    def __exit__(self, *exc: Any) -> None:
        self._close()

    async def __aenter__(self) -> TrackingScope:
        return self._open()

    async def __aexit__(self, *exc: Any) -> None:
        self._close()

    def __call__(self, fn: F) -> F:
        base, options, quiet, budget = self._base, self._options, self._quiet, self._budget

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = enter(child_scope(base(), options, quiet, budget()))
                try:
                    return await fn(*args, **kwargs)
                finally:
                    leave(token)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = enter(child_scope(base(), options, quiet, budget()))
            try:
                return fn(*args, **kwargs)
            finally:
                leave(token)

        return wrapper  # type: ignore[return-value]


def _budget_factory(budget: Any) -> Callable[[], Any]:
    """A maker of each scope's budget: a fresh ``LocalBudget`` per scope for an amount, or the given reserver."""
    if budget is None:
        return lambda: None
    from .budgets import LocalBudget, Reserver, check_budget

    if isinstance(budget, Reserver):
        return lambda: budget
    amount = check_budget(budget)
    return lambda: LocalBudget(amount, "pn.track budget")


_original_submit = ThreadPoolExecutor.submit
_original_start = threading.Thread.start
_propagation_lock = threading.Lock()


def _submit_with_scope(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    if _current.get() is None:
        return _original_submit(self, fn, *args, **kwargs)
    ctx = contextvars.copy_context()
    return _original_submit(self, ctx.run, fn, *args, **kwargs)


def _inherits_scope(thread: threading.Thread) -> bool:
    """Whether a thread started in a scope runs in it: the user's threads do; pool workers and ours do not.

    A pool worker outlives the task that started it (each task carries its own context, see
    ``_submit_with_scope``), and our own threads (flusher, sandbox) must never be captured.
    """
    target = getattr(thread, "_target", None) or type(thread).run
    if target is _pool_worker:
        return False
    module = getattr(target, "__module__", None) or ""
    return not (module == __package__ or module.startswith(f"{__package__}."))


def _start_with_scope(self: threading.Thread) -> None:
    if _current.get() is not None and _inherits_scope(self):  # an ambient scope needs no copying
        self.run = functools.partial(contextvars.copy_context().run, self.run)  # type: ignore[method-assign]
    _original_start(self)


def install_propagation() -> None:
    """Carry the current scope into thread-pool tasks (at submit) and new threads (at ``start()``)."""
    with _propagation_lock:
        ThreadPoolExecutor.submit = _submit_with_scope  # type: ignore[method-assign,assignment]
        threading.Thread.start = _start_with_scope  # type: ignore[method-assign]


def uninstall_propagation() -> None:
    with _propagation_lock:
        ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
        threading.Thread.start = _original_start  # type: ignore[method-assign]
