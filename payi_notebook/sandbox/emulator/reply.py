"""How long a reply is, how much of it is reasoning, and where a token cap cuts it."""

from __future__ import annotations

from dataclasses import dataclass

from .text import reply_pieces

# Reasoning effort -> units of 64 tokens; each reply adds 0-2 more units from its seed.
EFFORT_UNITS = {"none": 0, "minimal": 1, "low": 2, "medium": 4, "high": 8, "xhigh": 16}
DEFAULT_EFFORT = "medium"
REASONING_CHUNK = 64


def reasoning_tokens(seed: int, effort: str = DEFAULT_EFFORT) -> int:
    """Hidden reasoning tokens: ``64 * (effort units + seed % 3)``, 0 for effort ``none``."""
    units = EFFORT_UNITS[effort]
    return REASONING_CHUNK * (units + seed % 3) if units else 0


@dataclass(frozen=True)
class Reply:
    """Visible one-token pieces plus hidden reasoning tokens, after any cap."""

    pieces: list[str]
    reasoning: int
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return self.reasoning + len(self.pieces)


def plan_reply(seed: int, *, cap: int | None, reasoning: int = 0, length: int | None = None) -> Reply:
    """The reply for ``seed``; reasoning is spent first, so a cap shortens the visible text."""
    pieces = reply_pieces(seed, length)
    if cap is None or reasoning + len(pieces) <= cap:
        return Reply(pieces, reasoning, False)
    reasoning = min(reasoning, cap)
    return Reply(pieces[: cap - reasoning], reasoning, True)
