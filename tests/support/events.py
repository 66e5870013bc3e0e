"""The one ``UsageEvent`` factory for tests and benches: a call as capture would record it.

Units come from a provider-shaped ``usage`` through ``units_for`` (so cache and reasoning tokens
land where capture puts them) and ``tokens`` from those units; every field can be overridden.
"""

from __future__ import annotations

import uuid
from typing import Any

from payi_notebook.context import Context
from payi_notebook.events import UsageEvent
from payi_notebook.units import token_counts, units_for

# What each (provider, operation) looks like by default: category, model, response-id prefix, URL.
_SHAPES: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("openai", "chat"): ("system.openai", "gpt-4o-mini", "chatcmpl-", "https://api.openai.com/v1"),
    ("openai", "responses"): ("system.openai", "gpt-4.1", "resp_", "https://api.openai.com/v1"),
    ("openai", "embeddings"): ("system.openai", "text-embedding-3-small", "emb-", "https://api.openai.com/v1"),
    ("anthropic", "messages"): ("system.anthropic", "claude-3-5-haiku-latest", "msg_", "https://api.anthropic.com"),
}


def openai_usage(
    prompt: int = 1200, completion: int = 300, cached: int = 0, reasoning: int = 0, operation: str = "chat"
) -> dict[str, Any]:
    """An OpenAI ``usage`` object as the API returns it for ``operation`` (chat, responses or embeddings)."""
    if operation == "embeddings":
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    if operation == "responses":
        return {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def anthropic_usage(input: int = 800, output: int = 120, cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    """An Anthropic Messages ``usage`` object (``input_tokens`` excludes the cached ones, as the API does)."""
    return {
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }


def usage_event(
    provider: str = "openai", operation: str | None = None, usage: dict[str, Any] | None = None, **overrides: Any
) -> UsageEvent:
    """A completed, priced-looking call; ``usage`` is the provider's own usage object (a default one
    if omitted), ``overrides`` set any ``UsageEvent`` field (``units=`` wins over ``usage``)."""
    operation = operation or ("messages" if provider == "anthropic" else "chat")
    category, model, id_prefix, uri = _SHAPES[(provider, operation)]
    if usage is None:
        usage = anthropic_usage() if provider == "anthropic" else openai_usage(operation=operation)
    units = overrides.pop("units") if "units" in overrides else units_for(provider, usage)
    fields: dict[str, Any] = dict(
        provider=provider,
        category=category,
        operation=operation,
        resource=model,
        provider_response_id=f"{id_prefix}{uuid.uuid4().hex}",
        units=units,
        tokens=overrides.pop("tokens") if "tokens" in overrides else token_counts(units),
        latency_ms=420.0,
        http_status=200,
        provider_uri=uri,
        context=Context(),
    )
    fields.update(overrides)
    return UsageEvent(**fields)


def openai_event(
    prompt: int = 1200, completion: int = 300, cached: int = 0, reasoning: int = 0, operation: str = "chat", **overrides: Any
) -> UsageEvent:
    """An OpenAI call with these token counts (``operation`` picks the usage shape)."""
    usage = openai_usage(prompt, completion, cached, reasoning, operation)
    return usage_event("openai", operation, usage, **overrides)


def anthropic_event(
    input: int = 800, output: int = 120, cache_read: int = 0, cache_write: int = 0, **overrides: Any
) -> UsageEvent:
    """An Anthropic Messages call with these token counts."""
    return usage_event("anthropic", "messages", anthropic_usage(input, output, cache_read, cache_write), **overrides)
