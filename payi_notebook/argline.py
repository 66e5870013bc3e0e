"""The words of a ``%payi`` / ``%%payi`` line: shell-like quoting, then ``{expr}`` / ``$name``.

IPython expands ``{expr}`` and ``$name`` in the whole line before a magic sees it, so a value
with a space in it (``--user {who}`` with ``who = "ana smith"``) would split into two words,
and its non-POSIX splitting keeps quotes in values. Here the line is split first, as a shell
would (quotes group and are removed), and each expansion then lands inside one word. The
one exception: a word that is a single expansion whose value starts with ``-`` holds
options (``$LIMITS`` = ``"--limit a --limit b"``) and is split into words. An expression
that fails, or that is None (``--use-case {None}`` would make a use case named "None"), is
refused with a one-line message.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_WHOLE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*|\x00e[0-9]+\x00")  # a word that is one expansion


class LineError(ValueError):
    """The line cannot be split or expanded; the message says what to fix."""


def _braces(line: str) -> tuple[str, list[str]]:
    """``line`` with each top-level ``{expr}`` replaced by a placeholder, and the expressions.

    Quotes inside an expression belong to Python, not to the shell-like split, so they are
    taken out before splitting. ``{{`` and ``}}`` stand for literal braces.
    """
    out: list[str] = []
    exprs: list[str] = []
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char in "{}" and line[i : i + 2] in ("{{", "}}"):
            out.append(f"\x00b{'o' if char == '{' else 'c'}\x00")
            i += 2
            continue
        if char == "}":
            raise LineError(f"unmatched '}}' in {line!r}; write }}}} for a literal brace")
        if char != "{":
            out.append(char)
            i += 1
            continue
        depth, j, quote = 1, i + 1, ""
        while j < n and depth:
            c = line[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            j += 1
        if depth:
            raise LineError(f"unclosed '{{' in {line!r}; close the expression or write {{{{ for a literal brace")
        exprs.append(line[i + 1 : j - 1])
        out.append(f"\x00e{len(exprs) - 1}\x00")
        i = j
    return "".join(out), exprs


def split_line(line: str, namespace: Mapping[str, Any], evaluate: Callable[[str], Any]) -> list[str]:
    """Shell-like words of ``line`` with ``{expr}`` (``evaluate``\\ d once) and ``$name`` expanded."""
    masked, exprs = _braces(line)
    try:
        words = shlex.split(masked)
    except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
        raise LineError(f"cannot split {line!r}: {str(exc).lower()}; close the quote or escape it") from None
    values: dict[int, str] = {}

    def value_of(index: int) -> str:
        if index not in values:
            expr = exprs[index]
            try:
                value = evaluate(expr)
            except Exception as exc:
                raise LineError(f"{{{expr}}} failed: {type(exc).__name__}: {exc}") from None
            if value is None:
                raise LineError(f"{{{expr}}} is None; give a value, or leave the option out")
            values[index] = str(value)
        return values[index]

    def name_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in namespace:
            return match.group(0)  # as IPython does: an unknown $name stays as written
        if namespace[name] is None:
            raise LineError(f"${name} is None; give a value, or leave the option out")
        return str(namespace[name])

    out: list[str] = []
    for word in words:
        whole = _WHOLE.fullmatch(word) is not None
        word = _NAME.sub(name_of, word.replace("$$", "\x00d\x00"))
        word = re.sub("\x00e([0-9]+)\x00", lambda m: value_of(int(m.group(1))), word)
        word = word.replace("\x00bo\x00", "{").replace("\x00bc\x00", "}").replace("\x00d\x00", "$")
        if whole and word.startswith("-"):  # a variable holding options: ``$LIMITS`` = "--limit a --limit b"
            try:
                out.extend(shlex.split(word))
            except ValueError as exc:
                raise LineError(f"cannot split the options {word!r}: {str(exc).lower()}") from None
        else:
            out.append(word)
    return out
