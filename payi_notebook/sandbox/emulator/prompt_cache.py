"""Prompt caching as each provider reports it, over one bounded LRU of prefix digests.

OpenAI caches automatically: for a prompt of at least 1024 tokens, prefixes at 1024, 1152,
1280, ... tokens are remembered per model, and a request reports the longest one seen
before as ``cached_tokens``.

Anthropic caches up to explicit breakpoints (blocks with ``cache_control``): the longest
remembered prefix ending at a breakpoint, or at one of the 20 blocks before it, is read;
the rest up to the last breakpoint is written, split by each breakpoint's ``ttl``.
No minimum prefix length is enforced here (the real API wants 1024-4096 tokens).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .prompt import Prompt

OPENAI_MIN_PREFIX = 1024
OPENAI_STEP = 128
OPENAI_TTL = {"in_memory": 600.0, "24h": 86400.0}
ANTHROPIC_TTL = {"5m": 300.0, "1h": 3600.0}
ANTHROPIC_LOOKBACK_BLOCKS = 20


class PromptCache:
    """Prefix digests with expiry times; the least recently used go first when full."""

    def __init__(self, max_entries: int = 65536, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def hit(self, key: bytes) -> bool:
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires < self._clock():
            del self._entries[key]
            return False
        self._entries.move_to_end(key)
        return True

    def put(self, key: bytes, ttl: float) -> None:
        expires = self._clock() + ttl
        self._entries[key] = max(expires, self._entries.get(key, expires))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def openai_cached_tokens(self, prompt: Prompt, model: str, retention: str = "in_memory") -> int:
        """Tokens of the longest 128-token-aligned prefix (>= 1024) seen before for ``model``."""
        positions = range(OPENAI_MIN_PREFIX, len(prompt) + 1, OPENAI_STEP)
        if not positions:
            return 0
        digests = prompt.digests(positions, f"openai\0{model}")
        cached = 0
        for position, key in zip(positions, digests):
            if self.hit(key):
                cached = position
        ttl = OPENAI_TTL.get(retention, OPENAI_TTL["in_memory"])
        for key in digests:
            self.put(key, ttl)
        return cached

    def anthropic_usage(self, prompt: Prompt, model: str) -> CacheUsage:
        """Cache reads and writes for a prompt with ``cache_control`` breakpoints."""
        if not prompt.breakpoints:
            return CacheUsage()
        namespace = f"anthropic\0{model}"
        candidates: set[int] = set()
        for position, _ in prompt.breakpoints:
            earlier = [block for block in prompt.blocks if block <= position]
            candidates.update(earlier[-ANTHROPIC_LOOKBACK_BLOCKS - 1 :])
        ordered = sorted(candidates)
        read = 0
        for position, key in zip(ordered, prompt.digests(ordered, namespace)):
            if position > read and self.hit(key):
                read = position
        written = {"5m": 0, "1h": 0}
        previous = read
        breakpoint_positions = [position for position, _ in prompt.breakpoints]
        for (position, ttl), key in zip(prompt.breakpoints, prompt.digests(breakpoint_positions, namespace)):
            if position > previous:
                written[ttl] += position - previous
                previous = position
            self.put(key, ANTHROPIC_TTL[ttl])
        return CacheUsage(read=read, write_5m=written["5m"], write_1h=written["1h"])


@dataclass(frozen=True)
class CacheUsage:
    """Anthropic cache token counts for one request."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h
