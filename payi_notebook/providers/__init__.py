"""The provider APIs capture knows: one module per provider API, each declaring its ``PROVIDER``.

Adding a provider is one module here (its ``Provider``, ``Endpoint`` templates and adapter
classes) and its name in ``MODULES``; routing, proxying and the settings read this registry.
"""

from __future__ import annotations

from . import anthropic, azure_anthropic, azure_openai, bedrock, gemini, openai, vertex
from .base import ApiAdapter, Endpoint, Observation, Provider, read_error

MODULES = (openai, anthropic, azure_openai, azure_anthropic, gemini, vertex, bedrock)
PROVIDERS: dict[str, Provider] = {module.PROVIDER.name: module.PROVIDER for module in MODULES}


def endpoint_for(provider: str, operation: str) -> Endpoint:
    """The first endpoint of ``provider`` serving ``operation`` (a journal record names only these two)."""
    return next(e for e in PROVIDERS[provider].endpoints if e.operation == operation)


__all__ = ["PROVIDERS", "ApiAdapter", "Endpoint", "Observation", "Provider", "endpoint_for", "read_error"]
