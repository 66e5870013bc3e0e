"""Proxy mode: send a captured provider request through Pay-i's proxy route instead.

The provider's own credential passes through (Pay-i forwards it); Pay-i's key and the
context travel as ``xProxy-*`` headers. Headers the caller set per call win over the
context, and an empty one removes it, as in Pay-i's SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from ..context import Context
from ..secret import Secret
from . import bedrock_routes
from .routes import DEFAULT_BASES, OPERATIONS, PROXY_PREFIX, Route

_CONTEXT_HEADERS = (
    "xproxy-usecase-name",
    "xproxy-usecase-id",
    "xproxy-usecase-step",
    "xproxy-user-id",
    "xproxy-account-name",
    "xproxy-limit-ids",
)
_DEFAULT_PROVIDER_BASES = {provider: urls[0].removesuffix("/v1") for provider, urls in DEFAULT_BASES.items()}


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
    return base_url.rstrip("/") + PROXY_PREFIX[provider]


def _operation_path(route: Route) -> str:
    return next(path for path, op in OPERATIONS[route.provider].items() if op == route.operation)


@lru_cache(maxsize=64)
def _proxy_url(url_class: type, base_url: str, provider: str, operation_path: str) -> Any:
    """The proxy route's URL object (immutable, so one per route is reused)."""
    return url_class(base_url.rstrip("/") + PROXY_PREFIX[provider] + operation_path)


_context_headers: tuple[Context | None, dict[str, str]] = (None, {})


def _headers_for(context: Context) -> dict[str, str]:
    """The context's proxy headers; a cell's calls share one context, so the last one is kept."""
    global _context_headers
    cached, headers = _context_headers
    if cached is not context:
        headers = context.proxy_headers()
        _context_headers = (context, headers)
    return headers


def rewrite_to_proxy(request: Any, route: Route, target: ProxyTarget, context: Context) -> None:
    """Re-address ``request`` to the Pay-i proxy route, in place.

    The SDK builds a fresh request for every attempt, so nothing else sees the change, and
    nothing is copied on the caller's hot path.
    """
    if route.provider == bedrock_routes.PROVIDER:  # the model id is in the path, encoded as it was signed
        path = request.url.raw_path.decode("ascii")
        url = type(request.url)(target.base_url.rstrip("/") + bedrock_routes.proxy_path(path, urlsplit(route.base).path))
    else:
        url = _proxy_url(type(request.url), target.base_url, route.provider, _operation_path(route))
        if request.url.query:
            url = url.copy_with(query=request.url.query)
    request.url = url  # first: should anything below fail, the request goes to Pay-i, never to the provider with Pay-i's key
    add_proxy_headers(request.headers, route, target, context)
    request.headers["host"] = url.netloc.decode("ascii")


def add_proxy_headers(headers: Any, route: Route, target: ProxyTarget, context: Context) -> None:
    """Pay-i's key, the provider base URI and the context's ``xProxy-*`` headers, on a request
    already re-addressed to the proxy (httpx headers, or botocore's, where setting appends)."""
    additions = [(name, value) for name, value in _headers_for(context).items() if name not in headers]
    emptied = [name for name, value in headers.items() if not value and name.lower().startswith("xproxy-")]
    base_uri = "xproxy-provider-baseuri" not in headers and (
        target.always_base_uri or route.base.rstrip("/") != _DEFAULT_PROVIDER_BASES.get(route.provider)
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
