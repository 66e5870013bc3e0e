"""``pn.estimate(...)``: what a call will cost, before making it, with the reservation's bounds.

The high end is exactly what a budget would reserve for the call. Input tokens are exact
where the provider has a free counting endpoint we can reach (Anthropic's
``/v1/messages/count_tokens``, served by the emulator too); elsewhere the low end assumes
about four characters per token and the high end is the bound.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pandas as pd

from .. import current
from ..pricing import price_units
from .bounds import CATEGORIES, bound_usd, rates, request_bound

COUNTED_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")
CHARS_PER_TOKEN = 4


def estimate(
    model: str,
    messages: Any = None,
    max_tokens: int | None = None,
    n: int = 1,
    *,
    provider: str | None = None,
    api: str | None = None,
    client: Any = None,
    **request: Any,
) -> pd.DataFrame:
    """Low and high USD of ``n`` calls shaped like this request (one row; the token bounds behind it).

    ``api`` is ``chat`` / ``responses`` / ``embeddings`` (OpenAI) or ``messages`` (Anthropic);
    by default it follows the arguments (``input=`` means Responses, or embeddings for an
    embedding model). Other keyword arguments are request fields (``system``, ``input``,
    ``tools``, ``n`` choices as ``choices=``...). ``client``: an ``anthropic.Anthropic`` to count tokens with.
    """
    if not isinstance(model, str) or not model:
        raise ValueError("estimate needs model='...' (the model the call would use)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n is the number of calls to estimate, a positive integer; got {n!r}")
    provider = provider or ("anthropic" if model.startswith("claude") else "openai")
    if provider not in CATEGORIES:
        raise ValueError(f"provider must be one of {', '.join(CATEGORIES)}, got {provider!r}")
    api = api or _api(provider, model, request)
    body = _body(api, model, messages, max_tokens, request)
    bound = request_bound(provider, api, body, orjson.dumps(body))
    exact, note = (_count_tokens(body, client) if provider == "anthropic" else (None, None))
    high_in, high_out = bound.input_tokens, bound.output_tokens
    if exact is not None:
        low_in, input_source = exact, "count_tokens (exact)"
        high_in = exact
    else:
        low_in, input_source = _approx_tokens(body), f"low: ~{CHARS_PER_TOKEN} characters per token; high: {bound.input_source}"
    low_out = 0 if api == "embeddings" else 1
    category = CATEGORIES[provider]
    low = price_units(category, model, {"text": {"input": low_in, "output": low_out}}).estimate
    high = bound.usd
    table = rates(category, model)
    if exact is not None and table is not None and high_out is not None:
        high = bound_usd(table, exact, high_out, caching="cache_control" in orjson.dumps(body).decode())
    row = {
        "model": model,
        "provider": provider,
        "api": api,
        "n": n,
        "input_tokens_low": low_in,
        "input_tokens_high": high_in,
        "output_tokens_low": low_out,
        "output_tokens_high": high_out,
        "input_source": input_source,
        "output_source": bound.output_source,
        "per_call_low_usd": low,
        "per_call_high_usd": high,
        "low_usd": low * n,
        "high_usd": high * n,
        "note": bound.reason or note,
    }
    return pd.DataFrame([row])


def _api(provider: str, model: str, request: dict[str, Any]) -> str:
    if provider == "anthropic":
        return "messages"
    if "input" in request:
        return "embeddings" if "embedding" in model else "responses"
    return "chat"


def _body(api: str, model: str, messages: Any, max_tokens: int | None, request: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if messages is not None:
        body["messages"] = messages
    choices = request.pop("choices", None)
    if choices is not None:
        body["n"] = choices
    if max_tokens is not None:
        body["max_output_tokens" if api == "responses" else "max_tokens"] = max_tokens
    body.update(request)
    return body


def _approx_tokens(body: dict[str, Any]) -> int:
    text = sum(len(s) for s in _strings({k: v for k, v in body.items() if k != "model"}))
    return max(1, text // CHARS_PER_TOKEN)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _count_tokens(body: dict[str, Any], client: Any) -> tuple[int | None, str | None]:
    """Anthropic's free token count for ``body``, or (None, why not)."""
    try:
        client = client or _counting_client()
        if client is None:
            return None, "no Anthropic endpoint to count tokens with: input is bounded, not counted"
        fields = {k: v for k, v in body.items() if k in COUNTED_FIELDS}
        return int(client.messages.count_tokens(**fields).input_tokens), None
    except Exception as exc:  # counting is a refinement: the bound still stands
        return None, f"count_tokens failed ({type(exc).__name__}: {exc}); input is bounded, not counted"


def _counting_client() -> Any:
    """The emulator when calls go to the sandbox, else Anthropic with ANTHROPIC_API_KEY, else None."""
    try:
        import anthropic
    except ImportError:
        return None
    session = current.session()
    url = session.sandbox.provider_url if session.sandbox is not None else os.environ.get("PAYI_SANDBOX_PROVIDER_URL")
    if url:
        return anthropic.Anthropic(base_url=url, api_key="emulated", max_retries=0, timeout=10.0)
    if os.environ.get("ANTHROPIC_API_KEY"):
        return anthropic.Anthropic(max_retries=0, timeout=10.0)
    return None
