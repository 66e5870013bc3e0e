"""A request's prompt as one token sequence, with the positions prompt caching needs.

Both providers render their input the same way: tool definitions (compact JSON), then each
message (system prompt included) framed as ``<start> role <sep> content... <end>`` (4 tokens
of framing and role, plus the tokens of a ``name`` if given), then 3 tokens priming the reply.
Non-text parts (images, audio, files) cost a flat ``ATTACHMENT_TOKENS`` each.

Prefixes are identified by digests of their tokens, so caching and reply seeds never need
the text again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .text import TOKEN_PATTERN

ATTACHMENT_TOKENS = 85

_START, _SEP, _END = "<|start|>", "<|sep|>", "<|end|>"
_JOIN = "\x1f"


@dataclass
class Prompt:
    """Tokens plus block ends and cache breakpoints (token offsets, ascending)."""

    tokens: list[str]
    blocks: list[int] = field(default_factory=list)
    breakpoints: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def digests(self, positions: Sequence[int], namespace: str) -> list[bytes]:
        """Digest of the prefix ending at each position (ascending), within ``namespace``."""
        digest = hashlib.blake2b(namespace.encode() + b"\0", digest_size=16)
        result = []
        done = 0
        for position in positions:
            if position > done:
                digest.update((_JOIN.join(self.tokens[done:position]) + _JOIN).encode())
                done = position
            result.append(digest.copy().digest())
        return result

    def seed(self, namespace: str) -> int:
        """A number fixed by the whole prompt: same prompt and model, same reply."""
        return int.from_bytes(self.digests([len(self.tokens)], namespace)[0][:8], "big")


class PromptBuilder:
    """Accumulates a prompt's tokens in the order the provider reads them."""

    def __init__(self) -> None:
        self._prompt = Prompt([])
        self._tokens = self._prompt.tokens

    def text(self, value: str) -> None:
        self._tokens.extend(TOKEN_PATTERN.findall(value))

    def json(self, value: Any) -> None:
        self.text(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))

    def attachment(self, identity: str) -> None:
        """A non-text part: a flat token cost, yet distinct per content for caching."""
        mark = hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()
        self._tokens.extend([f"<|attachment {mark}|>"] * ATTACHMENT_TOKENS)

    def open(self, role: str, name: str | None = None) -> None:
        self._tokens.extend((_START, role))
        if name:
            self.text(name)
        self._tokens.append(_SEP)

    def close(self) -> None:
        self._tokens.append(_END)

    def end_block(self, ttl: str | None = None) -> None:
        """Mark the end of a content block; with a ``ttl`` it is a cache breakpoint."""
        position = len(self._tokens)
        self._prompt.blocks.append(position)
        if ttl is not None:
            self._prompt.breakpoints.append((position, ttl))

    def build(self) -> Prompt:
        """The finished prompt, primed for the assistant's reply."""
        self._tokens.extend((_START, "assistant", _SEP))
        return self._prompt
