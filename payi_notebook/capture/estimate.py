"""A rough input-token count read from a request body, for streams that ended before their usage.

An OpenAI stream reports its usage only in its last chunk, so a stream cut, abandoned or
closed early knows nothing of its prompt; without an estimate it would be priced as if it had
none. No tokenizer is at hand offline, so the count follows OpenAI's published rule of thumb:
about 4 characters of text per token, plus a few tokens of framing per message (3, and 1 more
for a ``name``) and 3 priming the reply. Only what the model reads counts: message and input
text, instructions, system prompts and tool definitions. Rows that carry such a count say so
(``input_tokens_estimated``).
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 3
NAME_TOKENS = 1
REPLY_TOKENS = 3

_PROMPT_FIELDS = ("messages", "input", "instructions", "system", "tools", "functions", "prompt")
_SKIPPED = frozenset({"type", "role", "id", "call_id", "cache_control", "detail", "format", "status"})


def estimate_input_tokens(body: Any) -> int:
    """Estimated prompt tokens of a provider request body (chat, Responses or Messages); 0 if none."""
    if not isinstance(body, dict):
        return 0
    chars = 0
    framing = 0
    for field in _PROMPT_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        chars += _text_length(value)
        if field in ("messages", "input") and isinstance(value, list):
            framing += MESSAGE_TOKENS * len(value)
            framing += NAME_TOKENS * sum(1 for item in value if isinstance(item, dict) and item.get("name"))
    if not chars and not framing:
        return 0
    return -(-chars // CHARS_PER_TOKEN) + framing + REPLY_TOKENS


def _text_length(value: Any) -> int:
    """Characters of text in a prompt value (strings anywhere inside, keys and markers left out)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_length(v) for k, v in value.items() if k not in _SKIPPED)
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    return 0
