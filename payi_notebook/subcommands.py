"""``%payi SUBCOMMAND ...``: one function per subcommand, each given the magics and its words.

Bad words raise ``UsageError`` with the usage line before anything runs. Widgets are
imported by the subcommand that shows them, so ``%load_ext`` never loads ipywidgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from .magic import PayiMagics

NO_ARGUMENTS = frozenset({"status", "df", "result", "off", "reset", "limits", "sandbox", "budget"})


def status(m: PayiMagics, rest: list[str]) -> Any:
    m.start()
    m.announce()
    return m.session.status_report()


def df(m: PayiMagics, rest: list[str]) -> Any:
    from .widgets.ledger_view import readable

    return readable(m.session.ledger)


def flush(m: PayiMagics, rest: list[str]) -> Any:
    if len(rest) > 1:
        raise UsageError(f"usage: %payi flush [TIMEOUT]  (seconds), got {' '.join(rest)!r}")
    try:
        return m.session.flush(float(rest[0]) if rest else 30.0)
    except ValueError as exc:  # float() or the timeout check: both say what to write
        raise UsageError(f"%payi flush takes a timeout in seconds, e.g. %payi flush 10: {exc}") from None


def result(m: PayiMagics, rest: list[str]) -> Any:
    from .widgets.result_view import ResultView

    return ResultView(m.session.last_result(wait=2.0))


def mode(m: PayiMagics, rest: list[str]) -> Any:
    if rest:
        if rest[0] not in ("proxy", "telemetry") or len(rest) > 1:
            raise UsageError("usage: %payi mode [proxy|telemetry]")
        m.mode = rest[0]
    print(f"mode: {m.session.settings.mode}")
    return None


def on(m: PayiMagics, rest: list[str]) -> Any:
    from .cell_options import parse_cell_options

    options = parse_cell_options(rest, m.session.resolve_limit_ids)
    m.start()
    m.announce()
    m.track_every_cell(options)
    print("payi: tracking every cell from the next one on (%payi off to stop)")
    return None


def off(m: PayiMagics, rest: list[str]) -> Any:
    m.track_every_cell(None)
    print("payi: tracking only %%payi cells")
    return None


def reset(m: PayiMagics, rest: list[str]) -> Any:
    print(f"payi: ledger cleared ({m.session.reset()})")
    return None


def provider(m: PayiMagics, rest: list[str]) -> Any:
    if rest == ["list"] or not rest:
        return m.session.provider_table()
    if rest[0] != "add" or len(rest) != 3:
        from .providers import PROVIDERS

        names = "|".join(PROVIDERS)
        raise UsageError(f"usage: %payi provider add {names} URL (the URL you give the SDK)  (or %payi provider list)")
    try:
        m.session.add_provider(rest[1], rest[2])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"payi: {rest[1]} calls to {rest[2]} will be captured")
    return None


def limits(m: PayiMagics, rest: list[str]) -> Any:
    try:
        return m.session.limits.list()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def sandbox(m: PayiMagics, rest: list[str]) -> Any:
    session = m.start()
    assert session.endpoint is not None
    if session.endpoint.kind != "sandbox":
        raise UsageError(f"calls go to {session.endpoint.kind} at {session.endpoint.base_url}, not to a sandbox")
    report: dict[str, Any] = {"base_url": session.endpoint.base_url}
    if session.sandbox is not None:
        report["provider_url"] = session.sandbox.provider_url
        report["events"] = len(session.sandbox.events())
    return report



def breakdown(m: PayiMagics, rest: list[str]) -> Any:
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

    return CostBreakdown(m.session.ledger, by=by)


def budget(m: PayiMagics, rest: list[str]) -> Any:
    from .widgets.budget_panel import BudgetPanel

    m.start()
    m.announce()
    return BudgetPanel(session=m.session)


def journal(m: PayiMagics, rest: list[str]) -> Any:
    if len(rest) not in (0, 2):
        raise UsageError("usage: %payi journal [deliver|discard NAME|all]  (NAME as %payi journal lists it)")
    try:
        print(m.session.journal(*rest))
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None
    return None


COMMANDS: dict[str, Callable[[PayiMagics, list[str]], Any]] = {
    "status": status, "df": df, "flush": flush, "result": result, "mode": mode, "on": on, "off": off,
    "reset": reset, "provider": provider, "limits": limits, "sandbox": sandbox, "breakdown": breakdown,
    "budget": budget, "journal": journal,
}  # fmt: skip


def run(m: PayiMagics, words: list[str]) -> Any:
    """Run ``%payi WORDS``; no words is ``status``."""
    command, rest = (words[0], words[1:]) if words else ("status", [])
    handler = COMMANDS.get(command)
    if handler is None:
        raise UsageError(f"unknown %payi subcommand {command!r}; use one of: {', '.join(COMMANDS)}")
    if command in NO_ARGUMENTS and rest:
        raise UsageError(f"%payi {command} takes no arguments, got {' '.join(rest)!r}")
    return handler(m, rest)
