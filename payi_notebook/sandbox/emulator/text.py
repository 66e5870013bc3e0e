"""The emulator's tokenizer and its deterministic reply text.

Tokenizer: a token is a run of up to 8 word characters (letters, digits, ``_``) or one other
non-space character; whitespace is free. ``"Hello, wonderful world!"`` is ``Hello | , |
wonderfu | l | world | !`` = 6 tokens. Simple enough that a test can recount it.

Replies are cut from a fixed pseudo-Latin corpus built once at import, in which every piece
(a word with its leading space, or a punctuation mark) is exactly one token, so a reply of
``n`` pieces is ``n`` tokens and streams as ``n`` deltas.
"""

from __future__ import annotations

import re

TOKEN_PATTERN = re.compile(r"\w{1,8}|[^\w\s]")

_WORDS = (
    "lorem", "ipsum", "dolor", "sit", "amet", "tempor", "magna", "aliqua", "veniam", "nostrud",
    "ullamco", "laboris", "commodo", "duis", "aute", "irure", "velit", "esse", "cillum", "fugiat",
    "nulla", "pariatur", "sint", "occaecat", "culpa", "officia", "mollit", "anim", "laborum", "sed",
    "ut", "enim", "minim", "quis", "nisi", "ex", "ea", "in", "est", "id", "non", "proident",
    "sunt", "qui", "eiusmod", "labore", "dolore", "aliquip", "quisquam", "voluptas", "beatae",
    "vitae", "dicta", "explicab", "nemo", "ipsam", "quia", "magnam", "numquam", "porro", "quaerat",
    "minima", "nobis", "omnis",
)
_SENTENCES = 512


def tokenize(text: str) -> list[str]:
    """The tokens of ``text`` under the emulator's rule (see the module docstring)."""
    return TOKEN_PATTERN.findall(text)


def count_tokens(text: str) -> int:
    return len(TOKEN_PATTERN.findall(text))


def _build_corpus() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Sentences of 4-12 words, some with a comma, each ending in a full stop.

    A 32-bit LCG (not ``random``) keeps the corpus identical on every Python version.
    """
    state = 0x2545F491
    pieces: list[str] = []
    starts: list[int] = []
    for _ in range(_SENTENCES):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        length = 4 + (state >> 24) % 9
        comma_after = (state >> 8) % length if state & 1 else -1
        starts.append(len(pieces))
        for position in range(length):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            word = _WORDS[(state >> 16) % len(_WORDS)]
            pieces.append(" " + (word.capitalize() if position == 0 else word))
            if position == comma_after and position < length - 1:
                pieces.append(",")
        pieces.append(".")
    return tuple(pieces), tuple(starts)


_PIECES, _STARTS = _build_corpus()


def reply_pieces(seed: int, length: int | None = None) -> list[str]:
    """One-token pieces of a reply chosen by ``seed``; joined, they are the reply text.

    With no ``length``, the reply is whole sentences totalling at least 16 tokens (16 + seed-
    derived up to 64); with one, exactly ``length`` pieces (the last need not end a sentence).
    """
    sentence = seed % _SENTENCES
    start = _STARTS[sentence]
    if length is None:
        target = 16 + (seed >> 16) % 49
        end_sentence = sentence
        count = 0
        while count < target:
            end_sentence += 1
            wrapped, index = divmod(end_sentence, _SENTENCES)
            count = _STARTS[index] + wrapped * len(_PIECES) - start
        length = count
    total = len(_PIECES)
    pieces = [_PIECES[(start + i) % total] for i in range(length)]
    if pieces:
        pieces[0] = pieces[0].lstrip()
    return pieces
