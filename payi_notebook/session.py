"""The process-wide session: settings, ledger, flusher, endpoint, and capture wiring.

Everything public (``pn.*``, ``%payi``) goes through one ``Session``. Starting it resolves
the Pay-i endpoint (a key means Pay-i; no key starts the local sandbox and says so),
starts the background flusher and installs capture. Capture hands each finished event
to ``sink``, which is the only place a call enters the ledger and the send queue.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from . import capture, current, tracking
from .analytics.use_cases import UseCases, explain_undefined
from .budgets.session import SessionBudgets
from .capture import CaptureConfig, ProxyTarget, RouteTable
from .capture.adapters import PROVIDERS
from .capture.exchange import Exchange
from .client import PayiClient
from .config import PAYI_DEFAULT_BASE_URL, Settings, check_timeout
from .context import Context, ContextError, derive
from .events import UsageEvent
from .files import private_dir
from .flusher import USE_CASE_NOT_FOUND, Flusher, FlushReport
from .journal import discard, find, others
from .ledger import Ledger, RowRef
from .limit_rules import MAX_LIMIT_TEXT
from .limits import Limits
from .naming import notebook_name, script_name
from .secret import Secret
from .tracking import TrackingScope
from .widgets.status import StatusReport

log = logging.getLogger("payi_notebook")
_UNSET = object()


@dataclass(frozen=True)
class Endpoint:
    """Where events go. ``kind`` is "Pay-i", "sandbox" (ours, in-process or CLI) or "custom"."""

    kind: str
    base_url: str
    api_key: Secret
    key: str  # identity of the endpoint for the spool (never the API key)

    def __repr__(self) -> str:
        return f"Endpoint(kind={self.kind!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class Problem:
    when: float
    message: str


def data_dir() -> Path:
    """Where the spool and the embedded sandbox's database live (``PAYI_NOTEBOOK_DATA_DIR``)."""
    configured = os.environ.get("PAYI_NOTEBOOK_DATA_DIR", "").strip()
    return Path(configured) if configured else Path(platformdirs.user_data_dir("payi_notebook"))


class Session:
    """One per process; see ``get_session``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.ledger = Ledger()
        self.flusher: Flusher | None = None
        self.sandbox: Any = None
        self.endpoint: Endpoint | None = None
        self.default_context = Context()
        self.problems: deque[Problem] = deque(maxlen=100)
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
        with self._lock:
            if self.started:
                return self
            try:
                self._start(endpoint)
            except BaseException:
                self.stop(0.0)
                raise
            return self

    def _start(self, endpoint: Endpoint | None) -> None:
        with self._lock:
            self.endpoint = endpoint or self._resolve_endpoint()
            self.flusher = self._new_flusher(adopt=endpoint is None)
            self.flusher.start()
            self._announce_journal()
            capture.install()
            tracking.install_propagation()
            self.apply_settings()
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True

    def _announce_journal(self) -> None:
        """Say at load when durability is degraded or other endpoints' events wait in the journal."""
        assert self.flusher is not None
        status = self.flusher.journal_status()
        lines = [self.announcement] if self.announcement else []
        if warning := status.warning():
            lines.append(f"payi_notebook: {warning}; see %payi status.")
        if status.others:
            count = sum(o.events for o in status.others)
            lines.append(f"payi_notebook: {count} undelivered event(s) journalled for another endpoint; see %payi status.")
        self.announcement = "\n".join(lines) or None

    def journal_warning(self) -> str | None:
        """Why durability is degraded right now (the badge shows it), or None."""
        flusher = self.flusher
        return flusher.journal_warning() if flusher is not None else None

    def journal(self, action: str | None = None, name: str | None = None) -> str:
        """The journals left for other endpoints; ``deliver``/``discard`` one by name (or ``all``)."""
        self.start()
        assert self.flusher is not None
        root, own = self.flusher.spool_dir.parent, self.flusher.spool_dir
        listed = others(root, own)
        if action is None:
            if not listed:
                return "payi: no undelivered events journalled for other endpoints"
            return "\n".join(
                f"{o.name}: {o.events} undelivered event(s) for {o.endpoint}" + (f", {o.in_use} file(s) in use" if o.in_use else "")
                for o in listed
            )
        if action not in ("deliver", "discard") or not name:
            raise ValueError("use journal deliver NAME|all or journal discard NAME|all (NAME as %payi journal lists it)")
        targets = [root / o.name for o in listed] if name == "all" else [find(root, own, name)]
        if action == "deliver":
            count = sum(self.flusher.deliver(path) for path in targets)
            return f"payi: {count} event(s) from other journals queued for {self.flusher.endpoint}"
        count = sum(discard(path) for path in targets)
        return f"payi: discarded {count} undelivered event(s) from other journals"

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
        )

    def spool_root(self) -> str:
        """The journal directory (each endpoint gets a directory inside it)."""
        return self.settings.spool_dir or str(data_dir() / "spool")

    def after_fork(self) -> None:
        """In a forked child: a journal and a delivery thread of its own; the parent's are left alone.

        Runs in the child right after ``fork()``, when only the forking thread survives and
        locks held by the parent's other threads stay held, so everything with a lock is new.
        The parent's flusher, ledger and sandbox handle are kept but never used (closing their
        files or sockets here could disturb the parent's). The new flusher starts with the first
        event; a multiprocessing child drains it as it exits, and whatever it could not send
        its parent takes over from its journal once it has ended (``adopt_orphans``).
        """
        self._lock = threading.RLock()
        self.children = False
        self.call_listeners, self.flush_participants = [], []  # the parent's (its Dask workers, say)
        if self.flusher is None:
            return
        _inherited.append((self.flusher, self.ledger, self.sandbox))
        self.flusher.release_after_fork()
        self.sandbox = None
        self.ledger = Ledger()
        self._last_ref = None
        self.flusher = self._new_flusher(adopt=False)
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:  # its bootstrap clears finalizers after fork, then runs these
            mp_util.register_after_fork(self, drain_at_process_exit)

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
        settings = self.settings
        if settings.api_key:
            provider_url = os.environ.get("PAYI_SANDBOX_PROVIDER_URL", "").strip()
            if provider_url:
                self._add_provider_bases(provider_url)
                kind = "sandbox"
            else:
                kind = "Pay-i" if settings.base_url.rstrip("/") == PAYI_DEFAULT_BASE_URL else "custom"
            self.announcement = None
            return Endpoint(kind, settings.base_url, settings.api_key, settings.base_url)
        from .sandbox.process import spawn

        db = data_dir() / "sandbox.db"
        private_dir(db.parent)
        self.sandbox = spawn(db=db, log_path=data_dir() / "sandbox.log")
        self._add_provider_bases(self.sandbox.provider_url)
        self.announcement = (
            f"payi_notebook: no PAYI_API_KEY, so calls go to the local Pay-i sandbox at {self.sandbox.base_url} "
            f"(nothing is sent to Pay-i; provider emulator at {self.sandbox.provider_url})."
        )
        return Endpoint("sandbox", self.sandbox.base_url, Secret(self.sandbox.api_key), f"sandbox:{db}")

    def _add_provider_bases(self, provider_url: str) -> None:
        """Make calls to the emulator recognisable, like calls to the real provider hosts."""
        from .sandbox.emulator import sdk_base_urls

        providers = {k: list(v) for k, v in self.settings.providers.items()}
        for provider, base in sdk_base_urls(provider_url):
            if base not in providers.setdefault(provider, []):
                providers[provider].append(base)
        self.settings.providers = providers

    def apply_settings(self) -> None:
        """Rebuild what capture reads from the settings (routes, mode, logging, proxy target)."""
        if self.endpoint is None:
            return
        if self.flusher is not None:
            self.flusher.create_use_cases = self.settings.create_use_cases
        config = CaptureConfig(
            routes=RouteTable(self.settings.providers, payi_base_url=self.endpoint.base_url),
            sink=self.sink,
            report=self.report,
            default_mode=self.settings.mode,
            log_default=self.settings.log_prompt_and_response,
            proxy=ProxyTarget(self.endpoint.base_url, self.endpoint.api_key, always_base_uri=self.endpoint.kind == "sandbox"),
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
            _warn_unguarded(call.route.provider)
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

    def report(self, what: str, exc: BaseException | None) -> None:
        """A failure of ours: logged and kept for ``%payi status``; never raised to the caller."""
        message = f"{what}: {type(exc).__name__}: {exc}" if exc is not None else what
        log.warning(message, exc_info=exc if exc is not None and log.isEnabledFor(logging.DEBUG) else None)
        self.problems.append(Problem(time.time(), message))

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
        """``values`` (limit ids or unique names) as ids; ContextError for an unknown or ambiguous one.

        Anything that is not a list of non-empty strings is returned as is, for ``check_options``
        to refuse with its own message.
        """
        if isinstance(values, str):
            values = [values]
        if values is None or not isinstance(values, (list, tuple)) or not all(isinstance(v, str) and v for v in values):
            return values
        for value in values:  # a name is at most as long as a limit's name (limit_rules)
            if len(value) > MAX_LIMIT_TEXT:
                raise ContextError(f"limit id or name is {len(value)} characters long; use at most {MAX_LIMIT_TEXT}")
        try:
            return self.limits.resolve(values, report=lambda message: self.report(message, None))
        except ValueError as exc:
            raise ContextError(str(exc)) from None

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
        for line in self.explain_refusals(refused):
            print(line)
        unguarded = sorted({c.route.provider for c in proxied if c.unguarded})
        if unguarded:
            print(_unguarded_note(unguarded))
        for listener in list(self.cell_listeners):
            try:
                listener(scope)
            except Exception as exc:  # a widget's refresh never breaks the cell
                self.report("a cell listener failed", exc)
        if self.children:  # a pool worker ended by os._exit or SIGTERM leaves its journal to us
            self.adopt_orphans()

    def explain_refusals(self, events: list[UsageEvent]) -> list[str]:
        """One line per limit that blocked calls (with its max and spend), per undefined use case, or per proxy failure."""
        lines: list[str] = []
        blocked: dict[str, int] = {}
        undefined: set[str] = set()
        for event in events:
            if event.status == "blocked":
                for limit_id in (event.xproxy_result or {}).get("blocked_limit_ids") or ["?"]:
                    blocked[limit_id] = blocked.get(limit_id, 0) + 1
            elif event.error and USE_CASE_NOT_FOUND in event.error and event.context.use_case_name:
                undefined.add(event.context.use_case_name)
            elif event.error:
                lines.append(f"payi: {event.error}")
        for name in sorted(undefined):
            lines.append(explain_undefined(UseCases(self.payi_client), name, self.settings.create_use_cases))
        for limit_id, count in blocked.items():
            calls = f"{count} call" + ("s were" if count > 1 else " was")
            try:
                limit = self.limits.get(limit_id)
                lines.append(
                    f"payi: {calls} blocked by limit {limit.limit_name!r} ({limit_id}, {limit.limit_type}): "
                    f"${limit.spent:.4f} spent of ${limit.max:.4f} max; nothing was sent to the provider. "
                    "Raise its max or reset it (pn.limits / %payi budget)."
                )
            except Exception as exc:  # still say what happened, even if the lookup fails
                lines.append(f"payi: {calls} blocked by limit {limit_id} (its details are unavailable: {exc})")
        return lines

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
            problems=tuple((p.when, p.message) for p in self.problems),
        )

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
            if shared is None or shared[0] is not self.endpoint:
                if shared is not None:
                    shared[1].close()
                self._shared_client = shared = (self.endpoint, self.payi_client())
            return shared[1]

    def provider_table(self) -> dict[str, list[str]]:
        """Every base URL whose calls are captured, per provider."""
        table = {name: list(provider.bases) for name, provider in PROVIDERS.items()}
        for provider, urls in self.settings.providers.items():
            table.setdefault(provider, []).extend(u for u in urls if u not in table[provider])
        return table

    def sandbox_report(self) -> dict[str, Any]:
        """Where the sandbox is and what it holds (only when calls go to a sandbox)."""
        self.start()
        assert self.endpoint is not None
        if self.endpoint.kind != "sandbox":
            raise ValueError(f"calls go to {self.endpoint.kind} at {self.endpoint.base_url}, not to a sandbox")
        report: dict[str, Any] = {"base_url": self.endpoint.base_url}
        if self.sandbox is not None:
            report["provider_url"] = self.sandbox.provider_url
            report["events"] = len(self.sandbox.events())
        return report


_session: Session | None = None
_session_lock = threading.Lock()
_inherited: list[Any] = []  # in a forked child: the parent's objects, kept alive and never used


def drain_at_process_exit(session: Session) -> None:
    """Deliver what a multiprocessing child captured as it exits (it skips ``atexit``)."""
    from multiprocessing import util

    util.Finalize(session, session.stop, exitpriority=10)


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
        session.after_fork()
    except Exception as exc:  # the child runs on, its calls untouched and uncaptured, and says why
        capture.configure(None)
        atexit.unregister(session.stop)
        log.warning("payi_notebook: a forked child could not set up its own journal, so it captures nothing: %r", exc)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def get_session() -> Session:
    """The process's session (created on first use, not started)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = Session()
        return _session


def close_session(timeout: float | None = None) -> None:
    """Stop and forget the session; the next use starts afresh from the environment."""
    global _session
    with _session_lock:
        current, _session = _session, None
    if current is not None:
        current.stop(timeout)


def _unguarded_note(providers: list[str]) -> str:
    return (
        f"payi: Pay-i has no proxy route for these {', '.join(providers)} calls, so they went direct and were "
        "ingested without their limit IDs (Pay-i refuses Block limits on ingest); Block limits cannot apply to them."
    )


_warned_unguarded: set[str] = set()


def _warn_unguarded(provider: str) -> None:
    """Outside a cell (``pn.track``), say it once per provider in the log."""
    if provider not in _warned_unguarded:
        _warned_unguarded.add(provider)
        log.warning(_unguarded_note([provider]))


current.provide(get_session)  # widgets and budgets default to this session without importing this module
