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

import os
import sysconfig
from types import TracebackType
from typing import Any

from . import tracking

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
    lines = _session.explain_refusals(refused) if refused and _session is not None else []
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


_session: Any = None


def install(shell: Any, session: Any) -> bool:
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
