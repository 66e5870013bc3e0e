"""``%%payi`` and ``%payi``: the notebook face of the session.

``%%payi [options]`` is rewritten by an input transformer into one line that opens the
cell's tracking scope, followed by the untouched body, so top-level ``await`` keeps working
(a cell magic running its body through ``run_cell`` would not). The scope is closed in
``post_run_cell`` by setting the parent back, which works whether or not the kernel ran the
cell in a context of its own. Bad options raise ``UsageError`` before the body runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Dict, Enum, Float, List, Unicode, observe

from . import refusals, tracking
from .argline import LineError, split_line
from .budgets import check_budget
from .budgets.cells import badge_extra, budget_lines, cell_budget, check_estimate, live_badge
from .context import Context, ContextError, check_options, merge, parse_property
from .naming import notebook_name
from .session import Session, close_session, get_session
from .tracking import TrackingScope

CELL_PREFIX = "%%payi"
SETTINGS = (
    "mode", "base_url", "log_prompt_and_response", "quiet", "spool_dir", "providers", "exit_timeout",
    "create_use_cases", "session_budget", "budget_thresholds",
)  # fmt: skip
NO_ARGUMENTS = frozenset({"status", "df", "result", "off", "reset", "limits", "sandbox", "budget"})
SUBCOMMANDS = (
    "status", "df", "flush", "result", "mode", "on", "off", "reset", "provider", "limits", "sandbox", "breakdown", "budget",
    "journal",
)  # fmt: skip


@magic_arguments()
@argument("--use-case", dest="use_case_name", metavar="NAME", help="use case name ([A-Za-z0-9._-], ≤ 64 chars)")
@argument("--use-case-id", metavar="ID", help="use case instance id (default: a new one per new name)")
@argument("--use-case-version", metavar="N", help="use case version (positive integer)")
@argument("--step", dest="use_case_step", metavar="STEP", help="use case step")
@argument("--user", dest="user_id", metavar="ID", help="user id")
@argument("--account", dest="account_name", metavar="NAME", help="account name")
@argument("--limit", dest="limit_ids", action="append", metavar="ID", help="limit id (repeatable)")
@argument("--prop", dest="props", action="append", metavar="KEY=VALUE", help="request property (repeatable)")
@argument("--proxy", action="store_true", help="route calls through the Pay-i proxy")
@argument("--telemetry", action="store_true", help="call providers directly; ingest after")
@argument("--no-log", dest="log", action="store_false", default=None, help="keep prompts and responses out of Pay-i")
@argument("--quiet", action="store_true", help="no summary line under the cell")
@argument("--budget", metavar="USD", help="the cell's budget in USD: a call that could pass it is refused before it is sent")
@argument("--estimate", metavar="N", nargs="?", const="3", help="run the first N calls (default 3), stop, project the cell's cost")
def cell_options(line: str) -> None:
    """Options of ``%%payi`` (and of ``%payi on``)."""


def parse_cell_options(
    words: list[str], resolve_limits: Callable[[list[str]], Any] | None = None
) -> tuple[dict[str, Any], bool]:
    """Cell options (already split, see ``argline``) checked as ``check_options`` gives them, and
    the quiet flag; UsageError on anything wrong. ``resolve_limits`` turns limit names into ids."""
    try:
        args = cell_options.parser.parse_args(words)
    except UsageError:
        raise
    except SystemExit:  # argparse's way of saying "bad arguments"
        raise UsageError(f"invalid %%payi options: {' '.join(words)!r}; see %%payi?") from None
    if args.proxy and args.telemetry:
        raise UsageError("--proxy and --telemetry exclude each other: give one")
    try:
        limit_ids = resolve_limits(args.limit_ids) if resolve_limits and args.limit_ids else args.limit_ids
        options = check_options(
            use_case_name=args.use_case_name,
            use_case_id=args.use_case_id,
            use_case_version=args.use_case_version,
            use_case_step=args.use_case_step,
            user_id=args.user_id,
            account_name=args.account_name,
            limit_ids=limit_ids,
            properties=dict(parse_property(p) for p in args.props) if args.props else None,
            proxy=True if args.proxy else False if args.telemetry else None,
            log_prompt_and_response=args.log,
        )
        options["budget"] = check_budget(args.budget, "--budget")
        options["estimate"] = check_estimate(args.estimate)
    except ContextError as exc:
        raise UsageError(str(exc)) from None
    return options, bool(args.quiet)


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

    mode = Enum(["telemetry", "proxy"], default_value="telemetry", help="Default mode of tracked calls.").tag(config=True)
    base_url = Unicode(None, allow_none=True, help="Pay-i base URL (default: PAYI_BASE_URL).").tag(config=True)
    log_prompt_and_response = Bool(True, help="Send prompts and responses to Pay-i.").tag(config=True)
    quiet = Bool(False, help="Hide the summary line under tracked cells.").tag(config=True)
    spool_dir = Unicode(None, allow_none=True, help="Directory of the durable send journal.").tag(config=True)
    providers = Dict(help="Extra provider base URLs, e.g. {'openai': ['http://localhost:8000/v1']}.").tag(config=True)
    exit_timeout = Float(5.0, help="Seconds to wait at exit for pending events.").tag(config=True)
    create_use_cases = Bool(True, help="Define a use case when Pay-i answers use_case_not_found.").tag(config=True)
    session_budget = Float(None, allow_none=True, help="USD all tracked calls of the session may spend.").tag(config=True)
    budget_thresholds = List(Float(), default_value=[0.8, 0.95], help="Budget fractions that warn once each.").tag(config=True)

    def __init__(self, shell: Any, session: Session) -> None:
        super().__init__(shell)
        self.session = session
        self._cell: tuple[int | None, str | None] = (None, None)
        self._cell_scope: TrackingScope | None = None
        self._on_options: tuple[dict[str, Any], bool] | None = None
        self._board: Any = None
        self._live: Any = None  # budgets.live.LiveSpend, once a cell has been tracked
        self._nested = 0  # cells run by the %%payi cell-magic fallback, inside the outer cell
        self._unmirror: Callable[[], None] = lambda: None

    # -- configuration ---------------------------------------------------------------------

    def _mirror(self) -> None:
        """Show the session's settings as this object's traits, and follow them when they change
        elsewhere (``pn.configure``): the settings are the one owner, these traits a view, so
        ``%config PayiMagics.mode = ...`` is never ignored for matching a stale value."""
        settings = self.session.settings

        def pull(change: dict[str, Any]) -> None:
            setattr(self, change["name"], change["new"])

        for name in SETTINGS:
            setattr(self, name, getattr(settings, name))
        settings.observe(pull, names=list(SETTINGS))
        self._unmirror = lambda: settings.unobserve(pull, names=list(SETTINGS))

    @observe(*SETTINGS)
    def _forward(self, change: dict[str, Any]) -> None:
        name, value = change["name"], change["new"]
        if name == "base_url" and value is None:
            return
        try:
            self.session.configure(**{name: value})
        except ValueError as exc:
            self.set_trait(name, getattr(self.session.settings, name))  # keep showing what holds
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
        parent = tracking.current()
        context = merge(parent.context if parent else self.base_context(), options)
        budget = cell_budget(options)
        inherited = parent.budgets if parent else ()
        scope = TrackingScope(
            context=context,
            parent=parent,
            execution_count=self._cell[0],
            cell_id=self._cell[1],
            quiet=quiet or self.quiet,
            proxied=[],
            budget=budget,
            budgets=(budget, *inherited) if budget is not None else inherited,
        )
        tracking.set_current(scope)
        if parent is None:
            self._cell_scope = scope
            if not scope.quiet:
                self._live_spend().start(scope)
        return scope

    def words(self, line: str) -> list[str]:
        """``line`` split like a shell command, ``{expr}`` and ``$name`` expanded inside each word."""
        try:
            return split_line(line, self.shell.user_ns, self.shell.ev)
        except LineError as exc:
            raise UsageError(str(exc)) from None

    def open_cell_scope(self, args: str) -> None:
        """``{expr}`` and ``$name`` in the options expand inside the (shell-like) words."""
        options, quiet = parse_cell_options(self.words(args), self.session.resolve_limit_ids)
        self.session.start()
        self._announce()
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
        extra = badge_extra(scope, self.session.budgets.session) if scope is not None else None
        self._board.show(refs, extra=extra, handle=handle)

    def _live_spend(self) -> Any:
        if self._live is None:
            from .budgets.live import LiveSpend

            self._live = LiveSpend(
                lambda scope, elapsed: live_badge(self.session.ledger, scope, self.session.budgets.session, elapsed),
                lambda badge: display(badge, display_id=True),
            )
        return self._live

    def _announce(self) -> None:
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
        words = self.words(line)
        if not words:
            return self._status()
        command, rest = words[0], words[1:]
        if command not in SUBCOMMANDS:
            raise UsageError(f"unknown %payi subcommand {command!r}; use one of: {', '.join(SUBCOMMANDS)}")
        if command in NO_ARGUMENTS and rest:
            raise UsageError(f"%payi {command} takes no arguments, got {' '.join(rest)!r}")
        handler: Callable[[list[str]], Any] = getattr(self, f"_cmd_{command}")
        return handler(rest)

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

    def _status(self) -> Any:
        self.session.start()
        self._announce()
        return self.session.status_report()

    def _cmd_status(self, rest: list[str]) -> Any:
        return self._status()

    def _cmd_df(self, rest: list[str]) -> Any:
        from .widgets.ledger_view import readable

        return readable(self.session.ledger)

    def _cmd_flush(self, rest: list[str]) -> Any:
        if len(rest) > 1:
            raise UsageError(f"usage: %payi flush [TIMEOUT]  (seconds), got {' '.join(rest)!r}")
        try:
            return self.session.flush(float(rest[0]) if rest else 30.0)
        except ValueError as exc:  # float() or the timeout check: both say what to write
            raise UsageError(f"%payi flush takes a timeout in seconds, e.g. %payi flush 10: {exc}") from None

    def _cmd_result(self, rest: list[str]) -> Any:
        from .widgets.result_view import ResultView

        return ResultView(self.session.last_result(wait=2.0))

    def _cmd_mode(self, rest: list[str]) -> Any:
        if not rest:
            print(f"mode: {self.session.settings.mode}")
            return None
        if rest[0] not in ("proxy", "telemetry") or len(rest) > 1:
            raise UsageError("usage: %payi mode [proxy|telemetry]")
        self.mode = rest[0]
        print(f"mode: {self.session.settings.mode}")
        return None

    def _cmd_on(self, rest: list[str]) -> Any:
        options = parse_cell_options(rest, self.session.resolve_limit_ids)
        self.session.start()
        self._announce()
        self._on_options = options
        print("payi: tracking every cell from the next one on (%payi off to stop)")
        return None

    def _cmd_off(self, rest: list[str]) -> Any:
        self._on_options = None
        print("payi: tracking only %%payi cells")
        return None

    def _cmd_reset(self, rest: list[str]) -> Any:
        report = self.session.reset()
        print(f"payi: ledger cleared ({report})")
        return None

    def _cmd_provider(self, rest: list[str]) -> Any:
        if rest == ["list"] or not rest:
            return self.session.provider_table()
        if rest[0] != "add" or len(rest) != 3:
            from .capture.adapters import PROVIDERS

            names = "|".join(PROVIDERS)
            raise UsageError(f"usage: %payi provider add {names} URL (the URL you give the SDK)  (or %payi provider list)")
        try:
            self.session.add_provider(rest[1], rest[2])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"payi: {rest[1]} calls to {rest[2]} will be captured")
        return None

    def _cmd_limits(self, rest: list[str]) -> Any:
        try:
            return self.session.limits.list()
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _cmd_sandbox(self, rest: list[str]) -> Any:
        return self.session.sandbox_report()

    def _cmd_breakdown(self, rest: list[str]) -> Any:
        from .widgets.aggregate import GROUPS, group_label

        by = "model"
        if rest:
            if rest[0].startswith("--by="):
                rest = ["--by", rest[0][5:], *rest[1:]]
            if rest[0] != "--by" or len(rest) != 2:
                raise UsageError(f"usage: %payi breakdown [--by COLUMN]  (COLUMN: {', '.join(GROUPS)})")
            try:
                by = group_label(rest[1])
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        from .widgets.breakdown import CostBreakdown

        return CostBreakdown(self.session.ledger, by=by)

    def _cmd_journal(self, rest: list[str]) -> Any:
        if len(rest) not in (0, 2):
            raise UsageError("usage: %payi journal [deliver|discard NAME|all]  (NAME as %payi journal lists it)")
        try:
            print(self.session.journal(*rest))
        except (ValueError, RuntimeError) as exc:
            raise UsageError(str(exc)) from None
        return None

    def _cmd_budget(self, rest: list[str]) -> Any:
        from .widgets.budget_panel import BudgetPanel

        self.session.start()
        self._announce()
        return BudgetPanel(session=self.session)


def load(shell: Any) -> PayiMagics:
    """Register magics, the input transformer and the cell hooks (once per shell)."""
    global _magics
    if _magics is not None and _magics.shell is shell:
        return _magics
    session = get_session()
    magics = PayiMagics(shell, session)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    magics._mirror()
    magics.update_config(shell.config)
    if transform_payi_cell not in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.insert(0, transform_payi_cell)
    shell.events.register("pre_run_cell", magics.pre_run_cell)
    shell.events.register("post_run_cell", magics.post_run_cell)
    refusals.install(shell, session)
    if budget_lines not in session.cell_listeners:
        session.cell_listeners.append(budget_lines)
    _magics = magics
    try:
        session.start()
    except Exception as exc:  # nothing stays half-installed: a retried %load_ext starts afresh
        unload(shell)
        raise UsageError(
            f"payi_notebook could not start ({type(exc).__name__}: {exc}); nothing was installed. "
            "Fix that and run %load_ext payi_notebook again."
        ) from exc
    magics._announce()
    return magics


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
    close_session()
