"""Prices for a Pay-i units map, from genai-prices (offline, current).

One function, ``price_units``, serves both sides: the sandbox uses it to answer with
``xproxy_result.cost`` the way Pay-i would, and the notebook side uses it for the local
``est_cost_usd``. A lookup costs ~0.1 ms, so callers keep it off the request's hot path.
A model genai-prices does not know is never priced at $0: its units come back as unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from genai_prices import Usage, calc_price

from .units import LARGE_CONTEXT_SUFFIX, Units, is_text_unit, token_counts

# Pay-i category → genai-prices provider id.
CATEGORY_PROVIDERS: dict[str, str] = {
    "system.openai": "openai",
    "system.azureopenai": "azure",
    "system.azure": "azure",  # Claude on Azure AI Foundry
    "system.anthropic": "anthropic",
    "system.google.vertex": "google",
    "system.aws.bedrock": "aws",
}


@dataclass(frozen=True)
class Price:
    """USD for one request. ``unknown_units`` holds what could not be priced."""

    input: float = 0.0
    output: float = 0.0
    total: float = 0.0
    unknown_units: Units = field(default_factory=dict)

    @property
    def priced(self) -> bool:
        """True when every unit was priced (so ``total`` is the whole cost)."""
        return not self.unknown_units

    @property
    def estimate(self) -> float:
        """The total if everything was priced, else NaN: a partial sum would mislead."""
        return self.total if self.priced else math.nan


@lru_cache(maxsize=1024)
def _model_known(provider_id: str, resource: str) -> bool:
    try:
        calc_price(Usage(input_tokens=1), resource, provider_id=provider_id)
    except LookupError:
        return False
    return True


def _resource_model(category: str, resource: str) -> str:
    """Vertex/Bedrock resources carry a vendor prefix genai-prices does not use."""
    if category == "system.google.vertex":
        return resource.removeprefix("google.").removeprefix("anthropic.")
    return resource


def price_units(
    category: str,
    resource: str | None,
    units: Mapping[str, Mapping[str, int]],
    when: datetime | None = None,
) -> Price:
    """Price ``units`` for ``resource`` in Pay-i ``category``.

    Text-like units (``text``, cache reads/writes, ``reasoning`` and their ``_large_context``
    variants) are priced together so genai-prices applies its context tiers; a
    ``web_search_request`` count is priced per search. Anything else is reported unknown.
    Current prices are memoised per (category, resource, units): repeated calls cost little.
    """
    if when is not None:
        return _price(category, resource, units, when)
    key = tuple(sorted((k, int(v.get("input") or 0), int(v.get("output") or 0)) for k, v in units.items()))
    return _price_now(category, resource, key)


@lru_cache(maxsize=4096)
def _price_now(category: str, resource: str | None, key: tuple[tuple[str, int, int], ...]) -> Price:
    return _price(category, resource, {k: {"input": i, "output": o} for k, i, o in key}, None)


def _price(
    category: str, resource: str | None, units: Mapping[str, Mapping[str, int]], when: datetime | None
) -> Price:
    provider_id = CATEGORY_PROVIDERS.get(category)
    model = _resource_model(category, resource or "")
    plain = {k: dict(v) for k, v in units.items()}
    if provider_id is None or not model or not _model_known(provider_id, model):
        return Price(unknown_units={k: v for k, v in plain.items() if any(v.values())})

    text = {k: v for k, v in plain.items() if is_text_unit(k)}
    searches = sum(int(v.get("output") or v.get("input") or 0) for k, v in plain.items() if k == "web_search_request")
    unknown = {k: v for k, v in plain.items() if not is_text_unit(k) and k != "web_search_request" and any(v.values())}

    tokens = token_counts(text)
    write_1h = sum(int(v.get("input") or 0) for k, v in text.items() if k.removesuffix(LARGE_CONTEXT_SUFFIX) == "text_cache_write_1h")
    usage = Usage(
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
        cache_write_1h_tokens=write_1h,
        output_reasoning_tokens=tokens.reasoning,
        web_searches=searches,
    )
    calc = calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=when)
    return Price(
        input=float(calc.input_price),
        output=float(calc.output_price),
        total=float(calc.total_price),
        unknown_units=unknown,
    )
