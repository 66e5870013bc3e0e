"""Which requests are provider API calls: matched by host, port and path.

Known public endpoints are built in; OpenAI-compatible gateways and the emulator are added
as extra base URLs. Requests to Pay-i are never provider calls, except its proxy routes,
which a user may have configured by hand: those are recognised as already proxied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import bedrock_routes as bedrock

DEFAULT_BASES: dict[str, tuple[str, ...]] = {
    "openai": ("https://api.openai.com/v1",),
    "anthropic": ("https://api.anthropic.com",),
}

# Path after the base URL → operation. OpenAI bases end in /v1; Anthropic bases do not.
OPERATIONS: dict[str, dict[str, str]] = {
    "openai": {"/chat/completions": "chat", "/responses": "responses", "/embeddings": "embeddings"},
    "anthropic": {"/v1/messages": "messages"},
}

# Pay-i proxy prefix per provider, and the provider path that follows it.
PROXY_PREFIX: dict[str, str] = {
    "openai": "/api/v1/proxy/openai/v1",
    "anthropic": "/api/v1/proxy/anthropic",
    bedrock.PROVIDER: bedrock.PROXY_PREFIX,
}


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    operation: str
    proxied: bool  # the URL already points at a Pay-i proxy route
    base: str  # scheme://host[:port][/prefix] the caller aimed at (what Pay-i calls the provider base URI)
    model: str | None = None  # the model id in the path (Bedrock), as given


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    default = 443 if scheme == "https" else 80
    return scheme, host.lower(), port or default


class RouteTable:
    """An immutable lookup from (scheme, host, port) and path to a ``Route``."""

    def __init__(self, extra: Mapping[str, Iterable[str]] | None = None, payi_base_url: str | None = None) -> None:
        self._by_origin: dict[tuple[str, str, int], list[tuple[str, str, bool]]] = {}
        bases: dict[str, list[str]] = {p: list(urls) for p, urls in DEFAULT_BASES.items()}
        for provider, urls in (extra or {}).items():
            bases.setdefault(provider, []).extend(urls)
        for provider, urls in bases.items():
            for url in urls:
                self._add(url, provider, proxied=False)
        if payi_base_url:
            for provider, prefix in PROXY_PREFIX.items():
                self._add(payi_base_url.rstrip("/") + prefix, provider, proxied=True)

    def _add(self, url: str, provider: str, proxied: bool) -> None:
        parts = urlsplit(url)
        origin = _origin(parts.scheme, parts.hostname or "", parts.port)
        entries = self._by_origin.setdefault(origin, [])
        entries.append((parts.path.rstrip("/"), provider, proxied))
        entries.sort(key=lambda e: len(e[0]), reverse=True)  # longest prefix first

    def match(self, scheme: str, host: str, port: int | None, path: str) -> Route | None:
        """The provider route of a request URL, or None for anything else."""
        entries = self._by_origin.get(_origin(scheme, host, port))
        if not entries:
            return bedrock_route(scheme, host, port, path) if bedrock.is_bedrock_host(host) else None
        for prefix, provider, proxied in entries:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if provider == bedrock.PROVIDER:
                route = bedrock_route(scheme, host, port, rest, prefix, proxied)
                if route is not None:
                    return route
                continue
            operation = OPERATIONS[provider].get(rest)
            if operation is None and provider == "openai" and rest.startswith("/v1/"):
                operation = OPERATIONS[provider].get(rest[3:])  # a gateway base given without /v1
                prefix += "/v1" if operation else ""
            if operation is None:
                continue
            origin_url = f"{scheme}://{host}" + (f":{port}" if port else "")
            provider_base = origin_url + prefix
            if provider == "openai":
                provider_base = provider_base.removesuffix("/v1")
            return Route(provider, operation, proxied, provider_base)
        return None


def bedrock_route(
    scheme: str, host: str, port: int | None, path: str, prefix: str = "", proxied: bool = False
) -> Route | None:
    """A Bedrock API route on any host (public hosts, a configured base, a boto3 client's endpoint)."""
    found = bedrock.operation(path)
    if found is None:
        return None
    operation, model = found
    base = f"{scheme}://{host}" + (f":{port}" if port else "") + prefix
    return Route(bedrock.PROVIDER, operation, proxied, base, model)
