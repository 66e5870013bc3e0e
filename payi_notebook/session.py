"""The process-wide session: it wires settings, ledger, flusher, endpoint and capture together.

Everything public (``pn.*``, ``%payi``) goes through one ``Session``. Starting it resolves
the endpoint (``endpoint.py``), starts the background flusher and installs capture; under
``%load_ext`` that happens on a thread of ours (``start_in_background``) and the first use
that needs it waits in ``start``. Capture hands each finished call to ``sink``, the only
place a call enters the ledger and the send queue. Failures of ours go to one ``Problems``
sink that capture, the flusher and ``%payi status`` share.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

from . import capture, forking, journals, refusals, tracking
from .budgets.session import SessionBudgets
from .capture import CaptureConfig, ProxyTarget, RouteTable
from .capture.exchange import Exchange
from .client import PayiClient
from .config import Settings, check_timeout, current_settings, forget_settings
from .context import Context, derive
from .delivery import Flusher, FlushReport
from .endpoint import Endpoint, data_dir, resolve
from .events import UsageEvent
from .ledger import Ledger, RowRef
from .limits import Limits, resolve_ids
from .naming import notebook_name, script_name
from .problems import Problems
from .providers import PROVIDERS
from .status_report import StatusReport
from .tracking import TrackingScope

__all__ = ["Endpoint", "Session", "close_session", "data_dir", "get_session", "running", "start_in_background"]

log = logging.getLogger("payi_notebook")
_UNSET = object()
START_WAIT = 120.0
"""Seconds a first use waits for a start in progress (the sandbox itself gets 30 s to come up)."""


class Session:
    """One per process; see ``get_session``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.ledger = Ledger()
        self.flusher: Flusher | None = None
        self.sandbox: Any = None
        self.endpoint: Endpoint | None = None
        self.default_context = Context()
        self.problems = Problems()
        self.announcement: str | None = None
        self._last_ref: RowRef | None = None
        self._lock = threading.RLock()
        self._atexit = False
        self._root_name: Any = _UNSET
        self.cell_listeners: list[Callable[[TrackingScope], None]] = []  # e.g. a budget panel refreshing
        self.call_listeners: list[Callable[[Callable[[], UsageEvent], TrackingScope], None]] = []  # a Dask worker's forwarder
        self.flush_participants: list[Callable[[float], FlushReport]] = []  # e.g. Dask workers' deliveries
        self.limit_ids: dict[str, str] = {}  # limit id or name → id, for this endpoint (see limits.py)
        self.limits = Limits(self.payi_client, ids=lambda: self.limit_ids)
        self._shared_client: tuple[Endpoint, PayiClient] | None = None
        self.budgets = SessionBudgets()
        self.children = False  # child processes were started: look for their journals after each cell
        self.start_error: BaseException | None = None  # why the last background start failed

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.flusher is not None

    def start(self, endpoint: Endpoint | None = None) -> Session:
        """Resolve the endpoint, start the flusher, install capture. Idempotent.

        If any step fails, what was set up is taken down again before the error is raised, so
        a retry starts from scratch. A given ``endpoint`` (a child process's, see
        ``children.py``) starts no sandbox, and the journals of ended processes are left to the
        parent that owns the endpoint.
        """
        if not self._lock.acquire(timeout=START_WAIT):
            raise RuntimeError(
                f"payi_notebook is still starting after {START_WAIT:.0f} s (the local sandbox logs to "
                f"{data_dir() / 'sandbox.log'}); wait and retry, or restart the kernel"
            )
        try:
            if self.started:
                return self
            try:
                self._start(endpoint)
            except BaseException:
                self.stop(0.0)
                raise
            self.start_error = None
            return self
        finally:
            self._lock.release()

    def _start(self, endpoint: Endpoint | None) -> None:
        with self._lock:
            self.endpoint = endpoint or self._resolve_endpoint()
            self.flusher = self._new_flusher(adopt=endpoint is None)
            self.flusher.start()
            self.announcement = journals.announcement(self.flusher, self.announcement)
            capture.install()
            tracking.install_propagation()
            self.apply_settings()
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True

    def journal_warning(self) -> str | None:
        """Why durability is degraded right now (the badge shows it), or None."""
        flusher = self.flusher
        return flusher.journal_warning() if flusher is not None else None

    def journal(self, action: str | None = None, name: str | None = None) -> str:
        """The journals left for other endpoints; ``deliver``/``discard`` one by name (or ``all``)."""
        self.start()
        return journals.manage(self.flusher, action, name)

    def _new_flusher(self, adopt: bool) -> Flusher:
        assert self.endpoint is not None
        return Flusher(
            self.ledger,
            base_url=self.endpoint.base_url,
            api_key=self.endpoint.api_key.reveal(),
            spool_dir=self.spool_root(),
            endpoint_key=self.endpoint.key,
            settings=self.settings,
            adopt=adopt,
            create_use_cases=self.settings.create_use_cases,
            problems=self.problems,
        )

    def spool_root(self) -> str:
        """The journal directory (each endpoint gets a directory inside it)."""
        return self.settings.spool_dir or str(data_dir() / "spool")

    def adopt_orphans(self) -> None:
        """Send what ended child processes (and dead kernels) left in their journals."""
        flusher = self.flusher
        if flusher is None:
            return
        try:
            flusher.adopt_orphans()
        except Exception as exc:  # never break the cell or the flush
            self.report("taking over a journal left by an ended process failed", exc)

    def stop(self, timeout: float | None = None) -> None:
        """Drain (bounded), stop the flusher and the embedded sandbox, remove capture."""
        with self._lock:
            capture.configure(None)
            capture.uninstall()
            tracking.uninstall_propagation()
            if self.flusher is not None:
                self.flusher.stop(self.settings.exit_timeout if timeout is None else timeout)
                self.flusher = None
            if self.sandbox is not None:
                self.sandbox.stop()
                self.sandbox = None
            if self._shared_client is not None:
                self._shared_client[1].close()
                self._shared_client = None
            self.endpoint = None
            self.limit_ids.clear()

    def restart(self) -> None:
        """Apply an endpoint change (key or base URL): drain to the old one, start on the new."""
        with self._lock:
            if self.started:
                self.stop()
                self.start()

    def _resolve_endpoint(self) -> Endpoint:
        found = resolve(self.settings)
        if found.sandbox is not None:
            self.sandbox = found.sandbox
        self.announcement = found.announcement
        return found.endpoint

    def apply_settings(self) -> None:
        """Rebuild what capture reads from the settings (routes, mode, logging, proxy target).

        Under the lock, so a change made while the session starts in the background is applied
        after that start's own configuration, never overwritten by it.
        """
        with self._lock:
            endpoint = self.endpoint
            if endpoint is None:
                return
            if self.flusher is not None:
                self.flusher.create_use_cases = self.settings.create_use_cases
            config = CaptureConfig(
                routes=RouteTable(self.settings.providers, payi_base_url=endpoint.base_url),
                sink=self.sink,
                report=self._capture_problem,
                default_mode=self.settings.mode,
                log_default=self.settings.log_prompt_and_response,
                proxy=ProxyTarget(endpoint.base_url, endpoint.api_key, always_base_uri=endpoint.kind == "sandbox"),
                session_budget=self.budgets.apply(self.settings),
                record_refusal=self.record_refusal,
            )
            capture.configure(config)

    # -- capture side ----------------------------------------------------------------------

    def sink(self, call: Exchange, scope: TrackingScope) -> None:
        """A finished call: into the ledger, the scope's tally and the flusher (which sends telemetry).

        A deferred call (``call.lazy``) only reserves its ledger row here; its event is built
        when the ledger or the flusher first needs it, off the caller's request path.
        """
        ref = self.ledger.append_later(call.event) if call.lazy else self.ledger.append(call.event())
        proxied = scope.root.proxied
        if (call.mode == "proxy" or call.unguarded) and proxied is not None:
            proxied.append(call)  # after the cell, refusals among them are explained, and unguarded calls named
        elif call.unguarded:
            refusals.warn_unguarded(call.route.provider)
        scope.add(ref)
        self._last_ref = ref
        flusher = self.flusher
        if flusher is not None:
            flusher.submit(call, ref, send=call.mode == "telemetry")
        for listener in self.call_listeners:
            listener(call.event, scope)

    def record_refusal(self, event: UsageEvent, scope: TrackingScope) -> None:
        """A call a budget refused before it was sent: a ledger row only (nothing goes to Pay-i)."""
        scope.add(self.ledger.append(event))
        for listener in self.call_listeners:
            listener(lambda: event, scope)

    def _capture_problem(self, what: str, exc: BaseException | None) -> None:
        self.problems.report("capture", what, exc)

    def report(self, what: str, exc: BaseException | None = None) -> None:
        """A failure of ours: logged and kept for ``%payi status``; never raised to the caller."""
        self.problems.report("session", what, exc)

    def configure(self, **changes: Any) -> None:
        """Change settings; an endpoint change (key, base URL, spool) restarts the flusher."""
        unknown = set(changes) - set(self.settings.trait_names())
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}; use one of {', '.join(sorted(self.settings.trait_names()))}")
        from traitlets import TraitError

        restart = {"api_key", "base_url", "spool_dir"} & {k for k, v in changes.items() if getattr(self.settings, k) != v}
        try:
            with self.settings.hold_trait_notifications():
                for name, value in changes.items():
                    setattr(self.settings, name, value)
        except TraitError as exc:
            raise ValueError(str(exc)) from None
        if restart:
            self.restart()
        else:
            self.apply_settings()

    def add_provider(self, provider: str, base_url: str) -> None:
        """Capture calls to an extra base URL (an OpenAI-compatible gateway, the emulator)."""
        providers = {k: list(v) for k, v in self.settings.providers.items()}
        providers.setdefault(provider, [])
        if base_url.rstrip("/") not in providers[provider]:
            providers[provider].append(base_url)
        self.configure(providers=providers)

    def resolve_limit_ids(self, values: Any) -> Any:
        """``values`` (limit ids or unique names) as ids; see ``limits.resolve_ids``."""
        return resolve_ids(self.limits, values, report=lambda message: self.report(message, None))

    def base_context(self, use_case_name: str | None) -> Context:
        """The root context of tracked calls: the notebook's name as the default use case."""
        if use_case_name and self.default_context.use_case_name != use_case_name:
            self.default_context = derive(Context(), use_case_name=use_case_name)
        return self.default_context

    def set_root_context(self, context: Context) -> None:
        """Use ``context`` as the base of ``pn.track`` (a child process takes its parent's)."""
        self.default_context = context
        self._root_name = context.use_case_name

    def root_context(self) -> Context:
        """Base context for ``pn.track``: the notebook's name under IPython, else the script's."""
        if self._root_name is _UNSET:
            shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
            self._root_name = notebook_name(shell.user_ns) if shell is not None else script_name()
        return self.base_context(self._root_name)

    # -- queries ---------------------------------------------------------------------------

    def last_result(self, wait: float = 0.0) -> dict[str, Any] | None:
        """``xproxy_result`` of the latest call in either mode; waits up to ``wait`` s for ingest's."""
        ref = self._last_ref
        if ref is None:
            return None
        deadline = time.monotonic() + wait
        while True:
            result = self.ledger.xproxy_result(ref)
            if result is not None or time.monotonic() >= deadline:
                return result
            time.sleep(0.02)

    def after_cell(self, scope: TrackingScope, show: Any) -> None:
        """End of a tracked cell: let estimates land briefly, then show the summary."""
        refs = list(scope.refs)
        if refs and self.flusher is not None:
            self.flusher.wait_priced(refs, timeout=0.5)
        if show is not None:
            show(refs)
        proxied = scope.proxied or ()
        refused = [c.event() for c in proxied if c.mode == "proxy" and c.event().status in ("blocked", "failed")]
        for line in refusals.explain(self, refused):
            print(line)
        unguarded = sorted({c.route.provider for c in proxied if c.unguarded})
        if unguarded:
            print(refusals.unguarded_note(unguarded))
        for listener in list(self.cell_listeners):
            try:
                listener(scope)
            except Exception as exc:  # a widget's refresh never breaks the cell
                self.report("a cell listener failed", exc)
        if self.children:  # a pool worker ended by os._exit or SIGTERM leaves its journal to us
            self.adopt_orphans()

    def flush(self, timeout: float = 30.0) -> Any:
        """Block until every pending event is delivered or ``timeout`` passes; report counts.

        Events left by ended child processes (and dead kernels) are taken over first.
        """
        timeout = check_timeout(timeout)
        self.start()
        self.adopt_orphans()
        assert self.flusher is not None
        deadline = time.monotonic() + timeout
        report = self.flusher.flush(timeout)
        for participant in list(self.flush_participants):
            report = report.combined(participant(max(0.0, deadline - time.monotonic())))
        return report

    def reset(self, timeout: float = 10.0) -> str:
        """Ask the flusher to drain, then clear the ledger (undelivered events stay queued)."""
        report = self.flush(timeout) if self.started else None
        self.ledger.reset()
        self._last_ref = None
        return str(report) if report is not None else "nothing was pending"

    def status_report(self) -> StatusReport:
        self.start()
        assert self.flusher is not None and self.endpoint is not None
        return StatusReport(
            endpoint_kind=self.endpoint.kind,
            endpoint_url=self.endpoint.base_url,
            mode=self.settings.mode,
            hooked=capture.hooked_libraries(),
            rows=len(self.ledger),
            delivery=self.flusher.status(),
            problems=tuple((p.when, p.message) for p in self.problems.recent()),
        )

    def provider_table(self) -> dict[str, list[str]]:
        """Every base URL whose calls are captured, per provider."""
        table = {name: list(provider.bases) for name, provider in PROVIDERS.items()}
        for provider, urls in self.settings.providers.items():
            table.setdefault(provider, []).extend(u for u in urls if u not in table[provider])
        return table

    def payi_client(self) -> PayiClient:
        """A synchronous Pay-i client for the current endpoint (the caller closes it)."""
        self.start()
        assert self.endpoint is not None
        return PayiClient(self.endpoint.base_url, self.endpoint.api_key.reveal(), timeout=15.0)

    def shared_client(self) -> PayiClient:
        """One long-lived client for the current endpoint (analytics calls reuse its connections); never close it."""
        self.start()
        with self._lock:
            shared = self._shared_client
            assert self.endpoint is not None
            if shared is None or shared[0] is not self.endpoint:
                if shared is not None:
                    shared[1].close()
                self._shared_client = shared = (self.endpoint, self.payi_client())
            return shared[1]

_session: Session | None = None
_session_lock = threading.Lock()


def _before_fork() -> None:
    if _session is not None:
        _session.children = True


def _after_fork_in_child() -> None:
    global _session_lock
    _session_lock = threading.Lock()
    session = _session
    if session is None:
        return
    try:
        forking.in_child(session)
    except Exception as exc:  # the child runs on, its calls untouched and uncaptured, and says why
        capture.configure(None)
        atexit.unregister(session.stop)
        log.warning("payi_notebook: a forked child could not set up its own journal, so it captures nothing: %r", exc)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def running() -> Session | None:
    """The process's session if it has started, else None (creates nothing)."""
    session = _session
    return session if session is not None and session.started else None


def start_in_background() -> None:
    """Build and start the session; run on a thread of ours (``magic.load``), never raises.

    Capture is installed by this start, and every way into a tracked scope (a ``%%payi``
    cell, ``%payi on``, ``pn.track``) goes through ``Session.start`` first, which waits for
    this one, so no call made in a scope runs before capture is in place. A failure is kept
    in the session's ``problems`` and ``start_error``; the next ``start()`` tries again and
    raises its own error.
    """
    session = get_session()
    try:
        session.start()
    except Exception as exc:
        session.start_error = exc
        session.problems.report("session", "starting in the background failed", exc)


def get_session() -> Session:
    """The process's session (created on first use, not started)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = Session(current_settings())  # the settings ``%config PayiMagics`` already shows
            import_module(".facade", __package__)  # KPI scores and notes join the ledger's frame
        return _session


def close_session(timeout: float | None = None) -> None:
    """Stop and forget the session; the next use starts afresh from the environment."""
    global _session
    with _session_lock:
        old, _session = _session, None
        forget_settings()
    if old is not None:
        old.stop(timeout)
