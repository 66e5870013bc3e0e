"""Upper bounds on what a call can cost, read from its request before it is sent.

The reservation needs a price that the call cannot exceed, computed in microseconds:

- **input tokens** ≤ the request body's size in bytes (every tokenizer we price — BPE for
  OpenAI and Anthropic — spends at least one byte of text per token, and the JSON around the
  text is longer than the few framing tokens per message), plus ``ATTACHMENT_TOKENS`` per
  image; a file, document or audio part, whose tokens the body does not show, makes the
  bound the model's context window. Never more than the context window (genai-prices').
- **output tokens** ≤ the call's cap (``max_tokens``, ``max_completion_tokens``,
  ``max_output_tokens``; reasoning is inside it), times ``n`` choices; without one, the
  model's output limit from ``OUTPUT_LIMITS``; failing that, its context window.
- **USD** = tokens × the highest per-token rate genai-prices gives the model (top context
  tier; 1-hour cache writes when the request asks for caching; reasoning at its own rate).

No bound (inf) when the model has no price, no context window and no cap, or the request
uses hosted tools that bill per use or run several model turns (web search, code execution,
file search, ...). Under a budget such a call is refused, and the message says why.

``actual_cost`` prices a finished call's units with the same rates: exact for models with
one price per token kind (genai-prices' own answer, ~100x faster than asking it per call),
an upper bound for tiered ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..pricing import CATEGORY_PROVIDERS, price_units

ATTACHMENT_TOKENS = 10_240  # the most any provider bills for one image (OpenAI's largest patch budget)
CATEGORIES = {"openai": "system.openai", "anthropic": "system.anthropic"}

# Longest model-name prefix first. Output-token ceilings the providers publish.
OUTPUT_LIMITS: tuple[tuple[str, int], ...] = (
    ("gpt-3.5-turbo", 4_096),
    ("gpt-4o-mini", 16_384),
    ("gpt-4o", 16_384),
    ("gpt-4.1", 32_768),
    ("gpt-4-turbo", 4_096),
    ("gpt-4", 8_192),
    ("gpt-5", 128_000),
    ("o1-mini", 65_536),
    ("o1", 100_000),
    ("o3", 100_000),
    ("o4-mini", 100_000),
    ("claude-3-haiku", 4_096),
    ("claude-3-5", 8_192),
    ("claude-3-7-sonnet", 64_000),
    ("claude-haiku-4", 64_000),
    ("claude-sonnet-4", 64_000),
    ("claude-opus-4-5", 64_000),
    ("claude-opus-4", 32_000),
)
_BY_LENGTH = sorted(OUTPUT_LIMITS, key=lambda item: len(item[0]), reverse=True)

OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
OPAQUE_PARTS = frozenset({"file", "input_file", "document", "input_audio", "container_upload", "search_result"})
_PART_HINTS = (b"image", b"file", b"document", b"audio", b"container_upload", b"search_result")
PLAIN_TOOLS = frozenset({"function", "custom"})


@dataclass(frozen=True, slots=True)
class CallBound:
    """What one call can cost at most, and where each number came from."""

    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    input_source: str
    output_source: str
    usd: float  # inf: no bound (``reason`` says why)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for one model; ``exact`` when genai-prices prices it linearly."""

    input: float  # the highest input-side rate (fresh input or 1h cache write)
    fresh_input: float
    output: float
    units: Mapping[tuple[str, str], float]
    context_window: int | None
    exact: bool


@lru_cache(maxsize=256)
def rates(category: str, model: str) -> Rates | None:
    """Per-token rates of ``model`` (None when genai-prices cannot price it)."""
    window = _context_window(category, model)
    probe = max(window or 0, 1_000_000)
    table: dict[tuple[str, str], float] = {}
    exact = True
    kinds = [("text", "input"), ("text", "output"), ("text_cache_read", "input"), ("text_cache_write", "input"),
             ("text_cache_write_1h", "input"), ("reasoning", "output")]  # fmt: skip
    if category == "system.anthropic":
        kinds += [(k + "_large_context", side) for k, side in kinds if k != "reasoning"]
        kinds.append(("web_search_request", "output"))
    for key, side in kinds:
        small = price_units(category, model, {key: {side: 1_000}})
        if not small.priced:
            if key == "text":
                return None
            continue
        big = price_units(category, model, {key: {side: probe}})
        low, high = small.total / 1_000, big.total / probe
        exact = exact and math.isclose(low, high, rel_tol=1e-9)
        table[(key, side)] = max(low, high)
    if ("web_search_request", "output") in table:
        table[("web_search_request", "output")] *= 1_000  # priced per search, not per token
    highest_input = max(v for (k, side), v in table.items() if side == "input" and k != "text_cache_read")
    output = max(v for (k, side), v in table.items() if side == "output" and k != "web_search_request")
    return Rates(highest_input, table[("text", "input")], output, table, window, exact)


def _context_window(category: str, model: str) -> int | None:
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, CATEGORY_PROVIDERS[category], None)
    except (LookupError, KeyError):
        return None
    return info.context_window


def output_limit(model: str) -> int | None:
    """The provider's published output ceiling for ``model`` (None when not in the table)."""
    name = model.lower().rpartition("/")[2]
    for prefix, limit in _BY_LENGTH:
        if name.startswith(prefix):
            return limit
    return None


def request_bound(provider: str, operation: str, body: Any, raw: bytes) -> CallBound:
    """The cost bound of a request: ``body`` parsed (a dict), ``raw`` its bytes."""
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        return _unbounded(None, "the request names no model")
    category = CATEGORIES.get(provider)
    table = rates(category, model) if category else None
    if table is None:
        return _unbounded(model, f"genai-prices has no price for model {model!r}")
    hosted = _hosted_tools(body.get("tools"))
    if hosted:
        return _unbounded(model, f"hosted tools ({', '.join(hosted)}) bill per use and may run several turns")
    window = table.context_window
    images, opaque = _parts(body) if any(hint in raw for hint in _PART_HINTS) else (0, False)
    input_tokens: int | None
    if opaque:
        input_tokens, input_source = window, "context window (the request has a file, document or audio part)"
    else:
        input_tokens = len(raw) + images * ATTACHMENT_TOKENS
        input_source = "request size in bytes" + (f" + {images} image(s)" if images else "")
        if window is not None and window < input_tokens:
            input_tokens, input_source = window, "context window"
    output_tokens: int | None
    if operation == "embeddings":
        output_tokens, output_source = 0, "embeddings have no output"
    else:
        output_tokens, output_source = _output_bound(body, model, window)
    if input_tokens is None:
        return _unbounded(model, f"{model!r} has no known context window to bound its file or audio input")
    if output_tokens is None:
        return _unbounded(model, f"{model!r} has no known output limit or context window and the call sets no max_tokens")
    usd = bound_usd(table, input_tokens, output_tokens, caching=b"cache_control" in raw)
    return CallBound(model, input_tokens, output_tokens, input_source, output_source, usd)


def bound_usd(table: Rates, input_tokens: int, output_tokens: int, caching: bool) -> float:
    """The most ``input_tokens`` in and ``output_tokens`` out can cost (cache writes when ``caching``)."""
    input_rate = table.input if caching else table.fresh_input
    return (input_tokens * input_rate + output_tokens * table.output) * (1 + 1e-9)


def _output_bound(body: dict[str, Any], model: str, window: int | None) -> tuple[int | None, str]:
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    times = f" × n={choices}" if choices > 1 else ""
    for key in OUTPUT_CAPS:
        cap = body.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            return cap * choices, f"{key}{times}"
    limit = output_limit(model)
    if limit is not None:
        return limit * choices, f"the model's output limit{times}"
    if window is not None:
        return window * choices, f"context window{times}"
    return None, "none"


def _unbounded(model: str | None, reason: str) -> CallBound:
    return CallBound(model, None, None, "none", "none", math.inf, reason)


def _hosted_tools(tools: Any) -> list[str]:
    """Tool types other than the caller's own functions."""
    if not isinstance(tools, list):
        return []
    found = []
    for tool in tools:
        if isinstance(tool, dict):
            kind = tool.get("type")
            if isinstance(kind, str) and kind not in PLAIN_TOOLS and kind not in found:
                found.append(kind)
    return found


def _parts(value: Any) -> tuple[int, bool]:
    """(images, any opaque part) anywhere in the request's content."""
    images, opaque = 0, False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if kind in IMAGE_PARTS:
                images += 1
                continue
            if kind in OPAQUE_PARTS:
                opaque = True
                continue
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return images, opaque


def actual_cost(category: str, model: str | None, units: Mapping[str, Mapping[str, int]]) -> float:
    """What a finished call cost, from its units (NaN when it cannot be priced here)."""
    if not units:
        return 0.0
    table = rates(category, model) if model else None
    total = 0.0
    for key, sides in units.items():
        for side, count in sides.items():
            if not count:
                continue
            if table is None:
                return math.nan
            rate = table.units.get((key, side))
            if rate is None:
                return math.nan
            total += count * rate
    return total
