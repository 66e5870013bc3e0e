"""A proxied call Pay-i refused, told as ours first: one line that says why, then a short traceback.

Installed as IPython's custom exception handler for the cell's uncaught exception. When the
running cell made proxied calls that Pay-i blocked or refused, the handler prints the
session's explanation (which limit, its spend and max, what to do) and shows the traceback
cut to the user's own frames, without the SDK's internals; the exception is the SDK's own,
unchanged, so ``except openai.BadRequestError`` keeps working. Any other exception gets
IPython's usual traceback. Explained calls are taken off the cell's list so the end of the
cell does not repeat them.
"""

from __future__ import annotations

import logging
import os
import sysconfig
from collections.abc import Callable
from types import TracebackType
from typing import Any

from . import tracking
from .xproxy import blocked_limit_ids

_LIBRARIES = tuple(
    os.path.realpath(p) + os.sep for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)
_OURS = os.path.dirname(os.path.realpath(__file__)) + os.sep


def _users_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback with only the frames of the user's code (not installed libraries, not ours)."""
    kept = []
    while tb is not None:
        name = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if not name.startswith(_LIBRARIES) and not name.startswith(_OURS):
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for entry in reversed(kept):
        chain = TracebackType(chain, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return chain


def _handler(shell: Any, etype: type, value: BaseException, tb: TracebackType, tb_offset: int | None = None) -> None:
    """IPython ignores what a custom handler returns here, so it shows the traceback itself."""
    scope = tracking.current()
    calls = scope.root.proxied if scope is not None else None
    refused = [c.event() for c in calls or () if c.event().status in ("blocked", "failed")]
    lines = explain(_session(), refused) if refused and _session is not None else []
    if not lines:  # what IPython shows without a custom handler
        if issubclass(etype, SyntaxError):
            shell.showsyntaxerror()
        else:
            shell.showtraceback(running_compiled_code=True)
        return
    assert calls is not None
    calls.clear()
    for line in lines:
        print(line)
    short = _users_frames(tb)
    stb = shell.InteractiveTB.structured_traceback(etype, value, short or tb, tb_offset=0 if short else tb_offset)
    shell._showtraceback(etype, value, stb)


_session: Callable[[], Any] | None = None


def install(shell: Any, session: Callable[[], Any]) -> bool:
    """Handle uncaught exceptions of tracked cells (unless the shell already has a custom handler)."""
    global _session
    if shell.custom_exceptions not in ((), (Exception,)) or (shell.custom_exceptions and _session is None):
        return False  # someone else's handler: leave it alone
    _session = session
    shell.set_custom_exc((Exception,), _handler)
    return True


def uninstall(shell: Any) -> None:
    global _session
    if _session is not None and shell.custom_exceptions == (Exception,):
        shell.set_custom_exc((), None)
    _session = None


# -- the text: why calls were refused, told once per limit / use case ------------------------


def explain(session: Any, events: list[Any]) -> list[str]:
    """One line per limit that blocked ``events`` (its max and spend), per undefined use case, per proxy failure."""
    from .analytics.use_cases import UseCases, explain_undefined
    from .delivery import USE_CASE_NOT_FOUND

    lines: list[str] = []
    blocked: dict[str, int] = {}
    undefined: set[str] = set()
    for event in events:
        if event.status == "blocked":
            for limit_id in blocked_limit_ids(event.xproxy_result) or ["?"]:
                blocked[limit_id] = blocked.get(limit_id, 0) + 1
        elif event.error and USE_CASE_NOT_FOUND in event.error and event.context.use_case_name:
            undefined.add(event.context.use_case_name)
        elif event.error:
            lines.append(f"payi: {event.error}")
    for name in sorted(undefined):
        lines.append(explain_undefined(UseCases(session.payi_client), name, session.settings.create_use_cases))
    for limit_id, count in blocked.items():
        calls = f"{count} call" + ("s were" if count > 1 else " was")
        try:
            limit = session.limits.get(limit_id)
            lines.append(
                f"payi: {calls} blocked by limit {limit.limit_name!r} ({limit_id}, {limit.limit_type}): "
                f"${limit.spent:.4f} spent of ${limit.max:.4f} max; nothing was sent to the provider. "
                "Raise its max or reset it (pn.limits / %payi budget)."
            )
        except Exception as exc:  # still say what happened, even if the lookup fails
            lines.append(f"payi: {calls} blocked by limit {limit_id} (its details are unavailable: {exc})")
    return lines


_warned_unguarded: set[str] = set()


def warn_unguarded(provider: str) -> None:
    """Outside a cell (``pn.track``), say it once per provider in the log."""
    if provider not in _warned_unguarded:
        _warned_unguarded.add(provider)
        logging.getLogger("payi_notebook").warning(unguarded_note([provider]))


def unguarded_note(providers: list[str]) -> str:
    """Why Block limits could not apply to calls Pay-i has no proxy route for."""
    return (
        f"payi: Pay-i has no proxy route for these {', '.join(providers)} calls, so they went direct and were "
        "ingested without their limit IDs (Pay-i refuses Block limits on ingest); Block limits cannot apply to them."
    )
