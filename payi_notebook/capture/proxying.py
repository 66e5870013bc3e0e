"""Proxy mode: send a captured provider request through Pay-i's proxy route instead.

The provider's own credential passes through (Pay-i forwards it); Pay-i's key and the
context travel as ``xProxy-*`` headers. Headers the caller set per call win over the
context, and an empty one removes it, as in Pay-i's SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..context import Context
from ..secret import Secret
from .adapters import PROVIDERS
from .routes import Route

_CONTEXT_HEADERS = (
    "xproxy-usecase-name",
    "xproxy-usecase-id",
    "xproxy-usecase-step",
    "xproxy-user-id",
    "xproxy-account-name",
    "xproxy-limit-ids",
)


@dataclass(frozen=True)
class ProxyTarget:
    """Where the Pay-i proxy lives; the key is kept out of reprs.

    ``always_base_uri``: name the provider's base URL on every call, even the public one. Pay-i
    assumes the public host when the header is absent; the sandbox assumes its emulator, so
    with the sandbox a call to api.openai.com must say so to reach the real provider.
    """

    base_url: str
    api_key: Secret
    always_base_uri: bool = False

    def __repr__(self) -> str:
        return f"ProxyTarget(base_url={self.base_url!r})"


def proxy_url(base_url: str, provider: str) -> str:
    """The base URL a provider SDK uses to go through Pay-i (``OpenAI(base_url=...)``)."""
    prefix = PROVIDERS[provider].proxy_prefix
    if prefix is None:
        raise ValueError(f"Pay-i has no proxy route for {provider}")
    return base_url.rstrip("/") + prefix


def proxyable(route: Route) -> bool:
    """Whether Pay-i has a proxy route for this call (else proxy mode sends it direct and ingests it)."""
    return route.endpoint is not None and route.endpoint.proxy and route.spec.proxy_prefix is not None


@lru_cache(maxsize=256)
def _proxy_url(url_class: type, base_url: str, prefix: str, path: str) -> Any:
    """The proxy route's URL object (immutable, so one per route is reused)."""
    return url_class(base_url.rstrip("/") + prefix + path)


_context_headers: tuple[Context | None, dict[str, str]] = (None, {})
# openai's Azure clients strip ``api-key`` from a request whose origin differs from this one (a
# redirect guard, run as an httpx event hook after ``send`` is called); the proxy is where the call
# is meant to go, and Pay-i forwards the key, so the guard's origin follows the rewrite.
_AZURE_AUTH_ORIGIN = "openai.azure_auth_origin"
_PORTS = {"http": 80, "https": 443}


def _headers_for(context: Context) -> dict[str, str]:
    """The context's proxy headers; a cell's calls share one context, so the last one is kept."""
    global _context_headers
    cached, headers = _context_headers
    if cached is not context:
        headers = context.proxy_headers()
        _context_headers = (context, headers)
    return headers


def rewrite_to_proxy(request: Any, route: Route, target: ProxyTarget, context: Context, model: str | None = None) -> None:
    """Re-address ``request`` to the Pay-i proxy route, in place.

    The SDK builds a fresh request for every attempt, so nothing else sees the change, and
    nothing is copied on the caller's hot path. ``route.path`` is the path as sent (a Bedrock
    model id stays encoded as it was signed).
    """
    url = _proxy_url(type(request.url), target.base_url, route.spec.proxy_prefix, route.path)
    if request.url.query:
        url = url.copy_with(query=request.url.query)
    request.url = url  # first: should anything below fail, the request goes to Pay-i, never to the provider with Pay-i's key
    add_proxy_headers(request.headers, route, target, context, model)
    request.headers["host"] = url.netloc.decode("ascii")
    if _AZURE_AUTH_ORIGIN in request.extensions:  # openai's Azure client drops api-key when the origin moves
        request.extensions = {**request.extensions, _AZURE_AUTH_ORIGIN: (url.scheme, url.host, url.port or _PORTS.get(url.scheme))}


def add_proxy_headers(headers: Any, route: Route, target: ProxyTarget, context: Context, model: str | None = None) -> None:
    """Pay-i's key, the provider base URI and the context's ``xProxy-*`` headers, on a request
    already re-addressed to the proxy (httpx headers, or botocore's, where setting appends).
    ``model`` fills ``xProxy-PriceAs-Resource`` where the route requires it (Azure Anthropic)."""
    spec = route.spec
    additions = [(name, value) for name, value in _headers_for(context).items() if name not in headers]
    emptied = [name for name, value in headers.items() if not value and name.lower().startswith("xproxy-")]
    base_uri = "xproxy-provider-baseuri" not in headers and (
        target.always_base_uri or spec.public_base is None or route.base.rstrip("/") != spec.public_base
    )
    for name in emptied:
        del headers[name]
    for name, value in additions:
        headers[name] = value
    if "xproxy-api-key" in headers:
        del headers["xproxy-api-key"]
    headers["xProxy-api-key"] = target.api_key.reveal()
    if base_uri:
        headers["xProxy-Provider-BaseUri"] = route.base
    if spec.price_as_resource and model and "xproxy-priceas-resource" not in headers:
        headers["xProxy-PriceAs-Resource"] = model


def context_from_headers(headers: Any, fallback: Context) -> Context:
    """Attribution of a call the user aimed at the proxy by hand: their headers, else the scope's."""
    def get(name: str) -> Any:
        value = headers.get(name)
        return value.decode("latin-1") if isinstance(value, bytes) else value  # botocore encodes its headers

    if not any(get(name) for name in _CONTEXT_HEADERS):
        return fallback
    version = get("xproxy-usecase-version")
    limits = get("xproxy-limit-ids")
    return Context(
        use_case_name=get("xproxy-usecase-name") or None,
        use_case_id=get("xproxy-usecase-id") or None,
        use_case_version=int(version) if version and version.isdigit() else None,
        use_case_step=get("xproxy-usecase-step") or None,
        user_id=get("xproxy-user-id") or None,
        account_name=get("xproxy-account-name") or None,
        limit_ids=tuple(i.strip() for i in limits.split(",") if i.strip()) if limits else (),
        proxy=True,
    )
