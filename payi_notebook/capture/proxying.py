"""Proxy mode: send a captured provider request through Pay-i's proxy route instead.

The provider's own credential passes through (Pay-i forwards it); Pay-i's key and the
context travel as ``xProxy-*`` headers. Headers the caller set (per call or on the client)
win over the context, and an empty one removes it, as in Pay-i's SDK; this holds too for a
client the user aimed at the proxy route by hand (``apply_context``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ..context import EMPTY, Context
from ..providers import PROVIDERS
from ..secret import Secret
from .routes import Route

# The context's headers (lower case, as httpx lists them) and the field each one sets.
_FIELDS = {
    "xproxy-limit-ids": "limit_ids",
    "xproxy-usecase-name": "use_case_name",
    "xproxy-usecase-id": "use_case_id",
    "xproxy-usecase-version": "use_case_version",
    "xproxy-usecase-step": "use_case_step",
    "xproxy-usecase-properties": "use_case_properties",
    "xproxy-user-id": "user_id",
    "xproxy-account-name": "account_name",
    "xproxy-request-properties": "properties",
    "xproxy-logging-disable": "log_prompt_and_response",
}
_USE_CASE_HEADERS = frozenset(name for name in _FIELDS if name.startswith("xproxy-usecase-"))
_USE_CASE_FIELDS = ("use_case_name", "use_case_id", "use_case_version", "use_case_step")
_URLSAFE = str.maketrans("-_", "+/")


@dataclass(frozen=True)
class ProxyTarget:
    """Where the Pay-i proxy lives (the key is a ``Secret``, so no repr shows it).

    ``always_base_uri``: name the provider's base URL on every call, even the public one. Pay-i
    assumes the public host when the header is absent; the sandbox assumes its emulator, so
    with the sandbox a call to api.openai.com must say so to reach the real provider.
    """

    base_url: str
    api_key: Secret  # its repr is Secret(***)
    always_base_uri: bool = False


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


_context_headers: tuple[Context | None, tuple[tuple[str, str, str], ...]] = (None, ())
# openai's Azure clients strip ``api-key`` from a request whose origin differs from this one (a
# redirect guard, run as an httpx event hook after ``send`` is called); the proxy is where the call
# is meant to go, and Pay-i forwards the key, so the guard's origin follows the rewrite.
_AZURE_AUTH_ORIGIN = "openai.azure_auth_origin"
_PORTS = {"http": 80, "https": 443}


def _headers_for(context: Context) -> tuple[tuple[str, str, str], ...]:
    """The context's proxy headers as (lower-case name, name, value); a cell's calls share one context."""
    global _context_headers
    cached, headers = _context_headers
    if cached is not context:
        headers = tuple((name.lower(), name, value) for name, value in context.proxy_headers().items())
        _context_headers = (context, headers)
    return headers


def apply_context(headers: Any, context: Context) -> Context:
    """Add the context's ``xProxy-*`` headers the caller did not set, in place; return the call's context.

    Headers the caller set (per call, or as a client's defaults) win, and an empty one removes
    itself and clears its field. A use case the caller names brings none of the context's use
    case fields along. The returned context is what the headers now say: ``context`` itself
    unless the caller set some.
    """
    given: dict[str, str] = {}
    emptied: list[str] = []
    for name, value in headers.items():
        name = name.lower()  # httpx's names are lower-case already; botocore keeps the case it was given
        if name.startswith("xproxy-"):
            if isinstance(value, bytes):  # botocore may hold values as bytes
                value = value.decode("latin-1")
            if name in _FIELDS:
                given[name] = value
            if not value:
                emptied.append(name)
    for name in emptied:
        del headers[name]
    own_use_case = "xproxy-usecase-name" in given
    for lower, name, value in _headers_for(context):
        if lower not in given and not (own_use_case and lower in _USE_CASE_HEADERS):
            headers[name] = value
    return _context_with(context, tuple(given.items())) if given else context


_applied: tuple[Context | None, tuple[tuple[str, str], ...], Context | None] = (None, (), None)


def _context_with(context: Context, given: tuple[tuple[str, str], ...]) -> Context:
    """``context`` with the caller's header values; the last one is kept (a client's defaults repeat)."""
    global _applied
    cached, cached_given, result = _applied
    if cached is context and cached_given == given and result is not None:
        return result
    fields = dict(given)
    changes: dict[str, Any] = {}
    if "xproxy-usecase-name" in fields:
        changes = {field: None for field in _USE_CASE_FIELDS}
        changes["use_case_properties"] = EMPTY
    for name, value in fields.items():
        changes[_FIELDS[name]] = _parse_header(_FIELDS[name], value)
    result = replace(context, **changes)
    _applied = (context, given, result)
    return result


def _parse_header(field: str, value: str) -> Any:
    """A context field from the caller's header value (lenient: a value we cannot read is dropped)."""
    if field == "limit_ids":
        return tuple(i.strip() for i in value.split(",") if i.strip())
    if field in ("properties", "use_case_properties"):
        try:
            data = json.loads(base64.b64decode(value.translate(_URLSAFE), validate=True)) if value else {}
        except (ValueError, binascii.Error):
            return EMPTY
        return MappingProxyType({str(k): str(v) for k, v in data.items()}) if isinstance(data, dict) else EMPTY
    if field == "use_case_version":
        return int(value) if value.isdigit() else None
    if field == "log_prompt_and_response":
        return False if value.strip().lower() == "true" else None
    return value or None


def rewrite_to_proxy(request: Any, route: Route, target: ProxyTarget, context: Context, model: str | None = None) -> Context:
    """Re-address ``request`` to the Pay-i proxy route, in place; return the call's context.

    The SDK builds a fresh request for every attempt, so nothing else sees the change, and
    nothing is copied on the caller's hot path. ``model`` fills ``xProxy-PriceAs-Resource``
    where the route requires it (Azure Anthropic). ``route.path`` is the path as sent (a
    Bedrock model id stays encoded as it was signed).
    """
    url = _proxy_url(request.url.__class__, target.base_url, route.spec.proxy_prefix, route.path)
    if request.url.query:
        url = url.copy_with(query=request.url.query)
    request.url = url  # first: should anything below fail, the request goes to Pay-i, never to the provider with Pay-i's key
    context = add_proxy_headers(request.headers, route, target, context, model)
    request.headers["host"] = url.netloc.decode("ascii")
    if _AZURE_AUTH_ORIGIN in request.extensions:  # openai's Azure client drops api-key when the origin moves
        request.extensions = {**request.extensions, _AZURE_AUTH_ORIGIN: (url.scheme, url.host, url.port or _PORTS.get(url.scheme))}
    return context


def add_proxy_headers(headers: Any, route: Route, target: ProxyTarget, context: Context, model: str | None = None) -> Context:
    """Pay-i's key, the provider base URI and the context's ``xProxy-*`` headers, on a request
    already re-addressed to the proxy (httpx headers, or botocore's through ``botocore_hook``'s
    view); return the call's context."""
    spec = route.spec
    base_uri = "xproxy-provider-baseuri" not in headers and (
        target.always_base_uri or spec.public_base is None or route.base.rstrip("/") != spec.public_base
    )
    context = apply_context(headers, context)
    if "xproxy-api-key" in headers:  # botocore's headers append on set: one key only
        del headers["xproxy-api-key"]
    headers["xProxy-api-key"] = target.api_key.reveal()
    if base_uri:
        headers["xProxy-Provider-BaseUri"] = route.base
    if spec.price_as_resource and model and "xproxy-priceas-resource" not in headers:
        headers["xProxy-PriceAs-Resource"] = model
    return context
