"""Provider usage → Pay-i units, and back to token counts.

Pay-i prices a request from a ``units`` map (``{"text": {"input": 12, "output": 3}, ...}``).
The mapping per provider follows Pay-i's own instrumentation, so what we ingest prices the
same as what Pay-i's SDK would send. Capture (notebook side) and the sandbox's proxy both
use this module, which imports nothing else of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

Units = dict[str, dict[str, int]]

LARGE_CONTEXT_SUFFIX = "_large_context"
ANTHROPIC_LARGE_CONTEXT_TOKENS = 200_000

# Unit keys whose input side counts as prompt tokens (with and without the large-context suffix).
_TEXT_INPUT_KEYS = ("text", "text_cache_read", "text_cache_write", "text_cache_write_1h")


def empty_units() -> Units:
    """A fresh units map for a call that used nothing (or reported no usage): Pay-i wants ``text`` present."""
    return {"text": {"input": 0, "output": 0}}


class TokenCounts(NamedTuple):
    """Token totals the ledger shows: input includes cached tokens, output includes reasoning."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


def _int(value: Any) -> int:
    """A usage field as a non-negative int (providers send null for 'not applicable')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(int(value), 0)


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _put(units: Units, key: str, side: str, value: int) -> None:
    if value:
        units.setdefault(key, {})[side] = value


def openai_units(usage: Mapping[str, Any] | None) -> Units:
    """Units for an OpenAI chat completion, Responses API result or embedding.

    Chat uses ``prompt_tokens``/``completion_tokens``; Responses uses ``input_tokens``/
    ``output_tokens``; embeddings report only ``prompt_tokens`` (output stays 0).
    Cached prompt tokens become ``text_cache_read``; reasoning tokens become ``reasoning``.
    """
    if not usage:
        return empty_units()
    if "input_tokens" in usage or "output_tokens" in usage:
        prompt = _int(usage.get("input_tokens"))
        completion = _int(usage.get("output_tokens"))
        cached = _int(_get(usage, "input_tokens_details", "cached_tokens"))
        reasoning = _int(_get(usage, "output_tokens_details", "reasoning_tokens"))
    else:
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        cached = _int(_get(usage, "prompt_tokens_details", "cached_tokens"))
        reasoning = _int(_get(usage, "completion_tokens_details", "reasoning_tokens"))
    cached = min(cached, prompt)
    reasoning = min(reasoning, completion)
    units: Units = {"text": {"input": prompt - cached, "output": completion - reasoning}}
    _put(units, "text_cache_read", "input", cached)
    _put(units, "reasoning", "output", reasoning)
    return units


def anthropic_units(usage: Mapping[str, Any] | None) -> Units:
    """Units for an Anthropic message.

    ``input_tokens`` already excludes cache reads and writes. A prompt of 200k tokens or more
    (counting cache) uses the ``_large_context`` variants. A 5m/1h cache-write breakdown, when
    present, splits ``text_cache_write`` from ``text_cache_write_1h``.
    """
    if not usage:
        return empty_units()
    fresh = _int(usage.get("input_tokens"))
    output = _int(usage.get("output_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    breakdown = usage.get("cache_creation")
    suffix = LARGE_CONTEXT_SUFFIX if fresh + write + read >= ANTHROPIC_LARGE_CONTEXT_TOKENS else ""
    units: Units = {f"text{suffix}": {"input": fresh, "output": output}}
    if isinstance(breakdown, Mapping) and ("ephemeral_5m_input_tokens" in breakdown or "ephemeral_1h_input_tokens" in breakdown):
        _put(units, f"text_cache_write{suffix}", "input", _int(breakdown.get("ephemeral_5m_input_tokens")))
        _put(units, f"text_cache_write_1h{suffix}", "input", _int(breakdown.get("ephemeral_1h_input_tokens")))
    else:
        _put(units, f"text_cache_write{suffix}", "input", write)
    _put(units, f"text_cache_read{suffix}", "input", read)
    _put(units, "web_search_request", "output", _int(_get(usage, "server_tool_use", "web_search_requests")))
    return units


GEMINI_LARGE_CONTEXT_TOKENS = 200_000
_INPUT_MODALITY = {"image": "vision"}


def _modality(detail: Any) -> tuple[str, int] | None:
    if not isinstance(detail, Mapping):
        return None
    name = str(detail.get("modality") or "TEXT").lower()
    return ("text" if name == "modality_unspecified" else name), _int(detail.get("tokenCount"))


def _by_modality(details: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detail in details if isinstance(details, list) else ():
        found = _modality(detail)
        if found:
            counts[found[0]] = counts.get(found[0], 0) + found[1]
    return counts


def google_units(usage: Mapping[str, Any] | None, model: str | None = None) -> Units:
    """Units for a Gemini ``usageMetadata`` (raw camelCase JSON, Gemini API and Vertex).

    As Pay-i's SDK: per-modality input minus that modality's cached tokens (images count as
    ``vision``), ``<m>_cache_read`` for cached tokens, candidates as output, thoughts as
    ``reasoning``. Unlike it, tool-use prompt tokens (search and code-execution results) count
    as input, and totals stand in when the per-modality details are missing. gemini-2.5-pro
    above 200k prompt tokens uses the ``_large_context`` variants.
    """
    if not usage:
        return empty_units()
    prompt = _int(usage.get("promptTokenCount"))
    cached_total = min(_int(usage.get("cachedContentTokenCount")), prompt)
    tool = _int(usage.get("toolUsePromptTokenCount"))
    inputs = _by_modality(usage.get("promptTokensDetails")) or {"text": prompt}
    for name, count in (_by_modality(usage.get("toolUsePromptTokensDetails")) or ({"text": tool} if tool else {})).items():
        inputs[name] = inputs.get(name, 0) + count
    cached = _by_modality(usage.get("cacheTokensDetails")) or ({"text": cached_total} if cached_total else {})
    outputs = _by_modality(usage.get("candidatesTokensDetails")) or {"text": _int(usage.get("candidatesTokenCount"))}
    suffix = LARGE_CONTEXT_SUFFIX if model and "gemini-2.5-pro" in model and prompt > GEMINI_LARGE_CONTEXT_TOKENS else ""
    units: Units = {}
    for name, count in inputs.items():
        key = _INPUT_MODALITY.get(name, name)
        read = min(cached.get(name, 0), count)
        _put(units, key + suffix, "input", count - read)
        _put(units, f"{key}_cache_read{suffix}", "input", read)
    for name, count in outputs.items():
        _put(units, name + suffix, "output", count)
    _put(units, "reasoning", "output", _int(usage.get("thoughtsTokenCount")))
    units.setdefault("text" + suffix, {}).setdefault("input", 0)
    units["text" + suffix].setdefault("output", 0)
    return units


def bedrock_units(usage: Mapping[str, Any] | None) -> Units:
    """Units for Bedrock's ``TokenUsage`` (Converse, ConverseStream's ``metadata`` event).

    ``inputTokens`` excludes cache reads and writes, which become ``text_cache_read`` and
    ``text_cache_write`` (Pay-i's names for them, as for Anthropic); a ``cacheDetails`` entry
    with ttl ``1h`` moves those writes to ``text_cache_write_1h``. Pay-i's own SDK drops the
    cache counts for Converse; they are billed, so we send them.
    """
    if not usage:
        return empty_units()
    units: Units = {"text": {"input": _int(usage.get("inputTokens")), "output": _int(usage.get("outputTokens"))}}
    write = _int(usage.get("cacheWriteInputTokens"))
    details = usage.get("cacheDetails")
    hour = 0
    if isinstance(details, list):
        hour = sum(_int(d.get("inputTokens")) for d in details if isinstance(d, Mapping) and d.get("ttl") == "1h")
    hour = min(hour, write)
    _put(units, "text_cache_write", "input", write - hour)
    _put(units, "text_cache_write_1h", "input", hour)
    _put(units, "text_cache_read", "input", _int(usage.get("cacheReadInputTokens")))
    return units


def units_for(wire: str, usage: Mapping[str, Any] | None, model: str | None = None) -> Units:
    """Units for a raw ``usage`` object in a wire format: ``"openai"``, ``"anthropic"``, ``"google"`` or ``"bedrock"``.

    Bedrock serves several usage shapes (its own ``TokenUsage``, Anthropic's and OpenAI's
    bodies through InvokeModel): the shape decides.
    """
    if wire == "bedrock":
        if not usage or "inputTokens" in usage or "outputTokens" in usage:
            return bedrock_units(usage)
        openai_shape = "prompt_tokens" in usage or "total_tokens" in usage or "input_tokens_details" in usage
        wire = "openai" if openai_shape else "anthropic"
    if wire == "anthropic":
        return anthropic_units(usage)
    if wire == "openai":
        return openai_units(usage)
    if wire == "google":
        return google_units(usage, model)
    raise ValueError(f"no unit mapping for {wire!r} usage")


def _base(key: str) -> str:
    return key.removesuffix(LARGE_CONTEXT_SUFFIX)


def is_text_unit(key: str) -> bool:
    """Whether a unit key is one of the token kinds priced from text token prices."""
    return _base(key) in _TEXT_INPUT_KEYS or key == "reasoning"


def token_counts(units: Mapping[str, Mapping[str, int]]) -> TokenCounts:
    """Token totals from a units map (provider-agnostic: the keys carry the meaning)."""
    inp = out = read = write = reasoning = 0
    for key, value in units.items():
        base = _base(key)
        i, o = _int(value.get("input")), _int(value.get("output"))
        if base in _TEXT_INPUT_KEYS:
            inp += i
            if base == "text_cache_read":
                read += i
            elif base.startswith("text_cache_write"):
                write += i
        if base == "text":
            out += o
        elif key == "reasoning":
            out += o
            reasoning += o
    return TokenCounts(inp, out, read, write, reasoning)


ANTHROPIC_LAYOUT_PROVIDERS = frozenset({"anthropic", "azure_anthropic"})
"""Providers whose units follow Anthropic's layout (input excludes cache reads and writes)."""

# Units map layouts for units_from_tokens: text key, then two optional one-sided entries (key, side).
TOKEN_LAYOUTS = (
    ("text", "text_cache_read", "input", "reasoning", "output"),  # OpenAI and the default
    ("text", "text_cache_write", "input", "text_cache_read", "input"),  # Anthropic
    tuple(part + LARGE_CONTEXT_SUFFIX if part.startswith("text") else part for part in
          ("text", "text_cache_write", "input", "text_cache_read", "input")),  # Anthropic, >= 200k prompt
)  # fmt: skip


def layout_units(layout: int, text_in: int, text_out: int, first: int, second: int) -> Units:
    """The map of one ``TOKEN_LAYOUTS`` entry: ``text`` and the one-sided entries that are non-zero."""
    text, first_key, first_side, second_key, second_side = TOKEN_LAYOUTS[layout]
    units: Units = {text: {"input": text_in, "output": text_out}}
    if first:
        units[first_key] = {first_side: first}
    if second:
        units[second_key] = {second_side: second}
    return units


def units_from_tokens(provider: str, tokens: TokenCounts) -> Units:
    """The units map that ``token_counts`` came from, for the shapes capture produces.

    The ledger stores token counts and rebuilds units from them; where this round trip does
    not reproduce the original map (1h cache writes, web searches, ...), it keeps the map.
    Equal to ``anthropic_units``/``openai_units`` of the matching usage, at a tenth of the
    cost (the ledger calls it on every append; ``ledger.build`` vectorises it over rows).
    """
    inp, out, read, write, reasoning = tokens
    if provider in ANTHROPIC_LAYOUT_PROVIDERS:
        return layout_units(1 + (inp >= ANTHROPIC_LARGE_CONTEXT_TOKENS), inp - read - write, out, write, read)
    return layout_units(0, inp - read, out - reasoning, read, reasoning)
