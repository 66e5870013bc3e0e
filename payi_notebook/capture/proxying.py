"""Proxy mode: send a captured provider request through Pay-i's proxy route instead.

The provider's own credential passes through (Pay-i forwards it); Pay-i's key and the
context travel as ``xProxy-*`` headers. Headers the caller set per call win over the
context, and an empty one removes it, as in Pay-i's SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..context import Context
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
    """Where the Pay-i proxy lives; the key is kept out of reprs."""

    base_url: str
    api_key: str

    def __repr__(self) -> str:
        return f"ProxyTarget(base_url={self.base_url!r})"


def proxy_url(base_url: str, provider: str) -> str:
    """The base URL a provider SDK uses to go through Pay-i (``OpenAI(base_url=...)``)."""
    return base_url.rstrip("/") + PROXY_PREFIX[provider]


def _operation_path(route: Route) -> str:
    return next(path for path, op in OPERATIONS[route.provider].items() if op == route.operation)


def rewrite_to_proxy(request: Any, route: Route, target: ProxyTarget, context: Context, content: bytes | None) -> Any:
    """A new request for the Pay-i proxy route equivalent to ``request``."""
    path = PROXY_PREFIX[route.provider] + _operation_path(route)
    url = type(request.url)(target.base_url.rstrip("/") + path)
    if request.url.query:
        url = url.copy_with(query=request.url.query)
    headers = request.headers.copy()
    headers.pop("host", None)
    if content is not None:
        headers.pop("content-length", None)
        headers["accept-encoding"] = "identity"
    for name, value in context.proxy_headers().items():
        if name not in headers:
            headers[name] = value
    for name in [n for n, v in headers.items() if n.lower().startswith("xproxy-") and not v]:
        del headers[name]
    headers["xProxy-api-key"] = target.api_key
    if route.base.rstrip("/") != _DEFAULT_PROVIDER_BASES[route.provider] and "xproxy-provider-baseuri" not in headers:
        headers["xProxy-Provider-BaseUri"] = route.base
    return type(request)(
        request.method,
        url,
        headers=headers,
        content=content if content is not None else request.content,
        extensions=request.extensions,
    )


def context_from_headers(headers: Any, fallback: Context) -> Context:
    """Attribution of a call the user aimed at the proxy by hand: their headers, else the scope's."""
    get = headers.get
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
