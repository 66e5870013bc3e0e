"""``%%payi`` and ``%payi``: the notebook face of the session.

``%%payi [options]`` is rewritten by an input transformer into one line that opens the
cell's tracking scope, followed by the untouched body, so top-level ``await`` keeps working
(a cell magic running its body through ``run_cell`` would not). The scope is closed in
``post_run_cell`` by setting the parent back, which works whether or not the kernel ran the
cell in a context of its own. Bad options raise ``UsageError`` before the body runs.

Loading is cheap on purpose: this module imports no pandas, pricing or HTTP client, and
``load`` starts the session (sandbox, sender, capture) on a thread of ours. Every way into a
tracked scope goes through ``Session.start``, which waits for that start, so the first
tracked call waits only if the session is not up yet. Subcommands live in ``subcommands.py``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import display
from traitlets import observe

from . import refusals, subcommands, tracking
from .argline import LineError, split_line
from .cell_options import parse_cell_options
from .config import MAGIC_SETTINGS, current_settings, magic_traits
from .context import Context, ContextError
from .naming import notebook_name
from .tracking import TrackingScope

if TYPE_CHECKING:
    from .session import Session

CELL_PREFIX = "%%payi"
SETTINGS = MAGIC_SETTINGS
SUBCOMMANDS = tuple(subcommands.COMMANDS)
_TRAITS = magic_traits()
SANDBOX_STARTING = (
    "payi_notebook: loaded; no PAYI_API_KEY, so the local Pay-i sandbox is starting in the background "
    "(nothing is sent to Pay-i; its URLs show with the first tracked cell and in %payi status)."
)


def transform_payi_cell(lines: list[str]) -> list[str]:
    """Input transformer: ``%%payi ARGS`` as the first line → a call opening the cell's scope."""
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index >= len(lines):
        return lines
    first = lines[index]
    if not first.startswith(CELL_PREFIX) or first[len(CELL_PREFIX) : len(CELL_PREFIX) + 1] not in ("", " ", "\t", "\n"):
        return lines
    args = first[len(CELL_PREFIX) :].strip()
    opener = f"__import__('payi_notebook.magic').magic.begin_cell({args!r})\n"
    return lines[:index] + [opener] + lines[index + 1 :]


_magics: PayiMagics | None = None


def begin_cell(args: str) -> None:
    """Called by the transformed first line of a ``%%payi`` cell."""
    if _magics is None:
        raise UsageError("%%payi needs the extension: run %load_ext payi_notebook first")
    _magics.open_cell_scope(args)


@magics_class
class PayiMagics(Magics):
    """``%%payi`` / ``%payi``. Options below are settable with ``%config PayiMagics.<option> = ...``."""

    shell: Any  # set by IPython's Magics; never None once registered
    mode = _TRAITS["mode"]
    base_url = _TRAITS["base_url"]
    log_prompt_and_response = _TRAITS["log_prompt_and_response"]
    quiet = _TRAITS["quiet"]
    spool_dir = _TRAITS["spool_dir"]
    providers = _TRAITS["providers"]
    exit_timeout = _TRAITS["exit_timeout"]
    create_use_cases = _TRAITS["create_use_cases"]
    session_budget = _TRAITS["session_budget"]
    budget_thresholds = _TRAITS["budget_thresholds"]

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.settings = current_settings()
        self._cell: tuple[int | None, str | None] = (None, None)
        self._cell_scope: TrackingScope | None = None
        self._on_options: tuple[dict[str, Any], bool] | None = None
        self._board: Any = None
        self._live: Any = None  # budgets.live.LiveSpend, once a cell has been tracked
        self._nested = 0  # cells run by the %%payi cell-magic fallback, inside the outer cell
        self._unmirror: Callable[[], None] = lambda: None

    @property
    def session(self) -> Session:
        """The process's session (built on our start thread; waiting here only if it is mid-build)."""
        from .session import get_session

        return get_session()

    # -- configuration ---------------------------------------------------------------------

    def _mirror(self) -> None:
        """Show the session's settings as this object's traits, and follow them when they change
        elsewhere (``pn.configure``): the settings are the one owner, these traits a view, so
        ``%config PayiMagics.mode = ...`` is never ignored for matching a stale value."""
        settings = self.settings

        def pull(change: dict[str, Any]) -> None:
            setattr(self, change["name"], change["new"])

        for name in SETTINGS:
            setattr(self, name, getattr(settings, name))
        settings.observe(pull, names=list(SETTINGS))
        self._unmirror = lambda: settings.unobserve(pull, names=list(SETTINGS))

    @observe(*SETTINGS)
    def _forward(self, change: dict[str, Any]) -> None:
        name, value = change["name"], change["new"]
        if (name == "base_url" and value is None) or getattr(self.settings, name) == value:
            return  # nothing changes (a mirrored value, say): no need to build the session for it
        try:
            self.session.configure(**{name: value})
        except ValueError as exc:
            self.set_trait(name, getattr(self.settings, name))  # keep showing what holds
            raise UsageError(str(exc)) from None

    # -- cell lifecycle --------------------------------------------------------------------

    def base_context(self) -> Context:
        return self.session.base_context(notebook_name(self.shell.user_ns))

    def pre_run_cell(self, info: Any) -> None:
        if self._nested:
            return
        count = self.shell.execution_count - 1 if getattr(info, "store_history", False) else None
        self._cell = (count, getattr(info, "cell_id", None))
        self._cell_scope = None
        tracking.set_current(None)
        if self._on_options is not None:
            self._open(*self._on_options)

    def _open(self, options: dict[str, Any], quiet: bool) -> TrackingScope:
        from .budgets.cells import cell_budget

        scope = tracking.child_scope(
            self.base_context(), options, quiet or self.quiet, cell_budget(options), cell=self._cell, proxied=[]
        )
        tracking.set_current(scope)
        if scope.parent is None:
            self._cell_scope = scope
            if not scope.quiet:
                self._live_spend().start(scope)
        return scope

    def track_every_cell(self, options: tuple[dict[str, Any], bool] | None) -> None:
        """``%payi on`` (cell options and quiet flag) / ``%payi off`` (None)."""
        self._on_options = options

    def start(self) -> Session:
        """The started session; UsageError saying what to fix if it cannot start."""
        session = self.session
        try:
            return session.start()
        except Exception as exc:
            raise UsageError(
                f"payi_notebook could not start ({type(exc).__name__}: {exc}). Fix that and run the cell again "
                "(or %unload_ext and %load_ext payi_notebook)."
            ) from exc

    def words(self, line: str) -> list[str]:
        """``line`` split like a shell command, ``{expr}`` and ``$name`` expanded inside each word."""
        try:
            return split_line(line, self.shell.user_ns, self.shell.ev)
        except LineError as exc:
            raise UsageError(str(exc)) from None

    def open_cell_scope(self, args: str) -> None:
        """``{expr}`` and ``$name`` in the options expand inside the (shell-like) words."""
        options, quiet = parse_cell_options(self.words(args), self.session.resolve_limit_ids)
        self.start()
        self.announce()
        try:
            self._open(options, quiet)
        except ContextError as exc:
            raise UsageError(str(exc)) from None

    def post_run_cell(self, result: Any) -> None:
        if self._nested:
            return
        scope, self._cell_scope = self._cell_scope, None
        tracking.set_current(None)
        if scope is None:
            return
        handle = self._live.stop(scope) if self._live is not None else None
        try:
            from .budgets.cells import budget_lines

            if budget_lines not in self.session.cell_listeners:
                self.session.cell_listeners.append(budget_lines)
            self.session.after_cell(scope, (lambda refs: self._show(refs, scope, handle)) if not scope.quiet else None)
        except Exception as exc:  # display problems never break the cell
            self.session.report("showing the cell summary failed", exc)

    def _show(self, refs: list[Any], scope: TrackingScope | None = None, handle: Any = None) -> None:
        """The cell's badge: in place of its live one (``handle``) when it had one."""
        if self._board is None:
            from .widgets.badge import BadgeBoard

            self._board = BadgeBoard(
                self.session.ledger, lambda badge: display(badge, display_id=True), note=self.session.journal_warning
            )
        from .budgets.cells import badge_extra

        extra = badge_extra(scope, self.session.budgets.session) if scope is not None else None
        self._board.show(refs, extra=extra, handle=handle)

    def _live_spend(self) -> Any:
        if self._live is None:
            from .budgets.cells import live_badge
            from .budgets.live import LiveSpend

            self._live = LiveSpend(
                lambda scope, elapsed: live_badge(self.session.ledger, scope, self.session.budgets.session, elapsed),
                lambda badge: display(badge, display_id=True),
            )
        return self._live

    def announce(self) -> None:
        """Print, once, what the session has to say (the sandbox's URLs, a degraded journal)."""
        message, self.session.announcement = self.session.announcement, None
        if message:
            print(message)

    # -- the magic -------------------------------------------------------------------------

    @no_var_expand  # expanded word by word in ``words`` instead, so values may hold spaces
    @line_cell_magic
    def payi(self, line: str, cell: str | None = None) -> Any:
        """Track a cell (``%%payi [options]``) or run a subcommand (``%payi status``, ...).

        Subcommands: status | df | flush [TIMEOUT] | result | mode [proxy|telemetry] |
        on [options] | off | reset | provider add NAME URL | provider list |
        limits | sandbox | breakdown [--by COLUMN] | budget.
        """
        if cell is not None:
            return self._run_cell_fallback(line, cell)
        return subcommands.run(self, self.words(line))

    def _run_cell_fallback(self, line: str, cell: str) -> Any:
        """``run_cell_magic("payi", ...)``, which the input transformer never sees: the body runs as
        a nested cell inside the scope; the outer cell's end closes it. (No top-level ``await`` here.)
        """
        self.open_cell_scope(line)
        self._nested += 1
        try:
            return self.shell.run_cell(cell).result
        finally:
            self._nested -= 1


def load(shell: Any) -> PayiMagics:
    """Register magics, the input transformer and the cell hooks (once per shell); start the session.

    The session starts on a thread of ours (``session.start_in_background``), so this returns
    at once; the load line says what is still starting and ``%payi status`` shows the end state.
    A data directory that cannot be made is refused here, before anything is installed.
    """
    global _magics
    if _magics is not None and _magics.shell is shell:
        return _magics
    _check_data_dir()
    magics = PayiMagics(shell)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    magics._mirror()
    magics.update_config(shell.config)
    if transform_payi_cell not in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.insert(0, transform_payi_cell)
    shell.events.register("pre_run_cell", magics.pre_run_cell)
    shell.events.register("post_run_cell", magics.post_run_cell)
    refusals.install(shell, lambda: magics.session)
    _magics = magics
    session_module = sys.modules.get(f"{__package__}.session")
    if session_module is not None and session_module.running() is not None:
        magics.announce()  # started before (pn.instrument, say): say what it has to say now
        return magics
    threading.Thread(target=_start_session, name="payi_notebook-start", daemon=True).start()
    if not magics.settings.api_key:  # with a key there is nothing to say unless something is wrong
        print(SANDBOX_STARTING)
    return magics


_WARM = ("budgets.cells", "budgets.live", "widgets.badge")  # what the first tracked cell shows with


def _start_session() -> None:
    """On our start thread: import the heavy modules (pandas, pricing, HTTP), start the session,
    then load what the first tracked cell needs, so that cell does not pay for it."""
    from importlib import import_module

    from .session import get_session, start_in_background

    start_in_background()
    try:
        for name in _WARM:
            import_module(f".{name}", __package__)
    except Exception as exc:  # the cell imports it again and says what fails there
        get_session().report("preloading the cell summary failed", exc)


def _check_data_dir() -> None:
    """Without a key the sandbox keeps its database in the data directory: refuse one we cannot make."""
    from .endpoint import data_dir
    from .files import private_dir

    if current_settings().api_key:
        return
    try:
        private_dir(data_dir())
    except OSError as exc:
        raise UsageError(
            f"payi_notebook could not start ({type(exc).__name__}: {exc}); nothing was installed. "
            "Fix that and run %load_ext payi_notebook again."
        ) from exc


def unload(shell: Any) -> None:
    """Undo ``load``: hooks, transformer, capture; the session drains what is pending."""
    global _magics
    magics = _magics
    if magics is None:
        return
    for name, fn in (("pre_run_cell", magics.pre_run_cell), ("post_run_cell", magics.post_run_cell)):
        try:
            shell.events.unregister(name, fn)
        except ValueError:
            pass
    if transform_payi_cell in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(transform_payi_cell)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    shell.magics_manager.magics["line"].pop("payi", None)
    shell.magics_manager.magics["cell"].pop("payi", None)
    magics._unmirror()
    refusals.uninstall(shell)
    if magics._board is not None:
        magics._board.close()
    tracking.set_current(None)
    _magics = None
    from .session import close_session

    close_session()
