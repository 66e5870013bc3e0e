"""Which requests are provider API calls: matched by origin (host wildcards allowed) and path template.

Each provider module (``adapters/``) declares its public base URLs and the path templates
under them; users add base URLs for gateways and the emulator. Requests to Pay-i are never
provider calls, except its proxy routes, which a user may have configured by hand: those
are recognised as already proxied. A URL seen before costs one dict lookup; a new one, a
lookup by origin (wildcard origins are resolved once per host) and a template match per
candidate. Routes are immutable, so one per URL is shared by all its calls. Paths are
matched encoded, as sent and signed (a Bedrock ARN model id keeps its ``%2F``); parameters
are decoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

from ..providers import PROVIDERS, Endpoint, Provider

_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
_VERSION = re.compile(r"/v\d+[a-z0-9]*$")
_ORIGIN_CACHE_LIMIT = 1024
_MATCH_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    operation: str
    proxied: bool  # the URL already points at a Pay-i proxy route
    base: str  # scheme://host[:port][/prefix] the caller aimed at (what Pay-i calls the provider base URI)
    endpoint: Endpoint | None = None
    path: str = ""  # the path after ``base``: what follows the Pay-i proxy prefix
    params: Mapping[str, str] = field(default_factory=dict)  # template parameters (model, deployment, ...)

    @property
    def spec(self) -> Provider:
        return PROVIDERS[self.provider]


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    default = 443 if scheme == "https" else 80
    return scheme, host.lower(), port or default


@lru_cache(maxsize=256)
def _template(template: str) -> re.Pattern[str]:
    """A path template (``/{version}/models/{model}:generateContent``) as an anchored pattern.

    A parameter ends at ``/``, and at ``:`` where the template continues with one (Google's
    ``:verb``); elsewhere ``:`` belongs to it (Bedrock model ids: ``anthropic.claude-…-v1:0``, ARNs).
    """
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/:]+)" if parts[i + 1].startswith(":") else f"(?P<{p}>[^/]+)"
        for i, p in enumerate(parts)
    )
    return re.compile(pattern)


def _host_pattern(host: str) -> re.Pattern[str]:
    return re.compile("".join("[^./]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", host.lower())))


# (path prefix, provider, proxied)
_Entry = tuple[str, Provider, bool]


class RouteTable:
    """An immutable lookup from (scheme, host, port) and path to a ``Route``."""

    def __init__(self, extra: Mapping[str, Iterable[str]] | None = None, payi_base_url: str | None = None) -> None:
        self._by_origin: dict[tuple[str, str, int], list[_Entry]] = {}
        self._wild: list[tuple[str, re.Pattern[str], int, _Entry]] = []
        self._resolved: dict[tuple[str, str, int], list[_Entry]] = {}
        self._matched: dict[tuple[str, str, int | None, str], Route | None] = {}
        for provider in PROVIDERS.values():
            for url in provider.bases:
                self._add(url, provider, proxied=False)
        for name, urls in (extra or {}).items():
            for url in urls:
                self._add(url, PROVIDERS[name], proxied=False)
        if payi_base_url:
            for provider in PROVIDERS.values():
                if provider.proxy_prefix:
                    self._add(payi_base_url.rstrip("/") + provider.proxy_prefix, provider, proxied=True)

    def _add(self, url: str, provider: Provider, proxied: bool) -> None:
        parts = urlsplit(url)
        prefix = parts.path.rstrip("/")
        if provider.version_in_base and not proxied:
            prefix = _VERSION.sub("", prefix)  # AnthropicVertex's base ends in /v1; the templates say {version}
        host = parts.hostname or ""
        entry = (prefix, provider, proxied)
        if "*" in host:
            port = _origin(parts.scheme, host, parts.port)[2]
            self._wild.append((parts.scheme, _host_pattern(host), port, entry))
            return
        entries = self._by_origin.setdefault(_origin(parts.scheme, host, parts.port), [])
        entries.append(entry)
        entries.sort(key=lambda e: len(e[0]), reverse=True)  # longest prefix first

    def _entries(self, origin: tuple[str, str, int]) -> list[_Entry]:
        found = self._resolved.get(origin)
        if found is None:
            scheme, host, port = origin
            found = list(self._by_origin.get(origin, ()))
            found += [e for s, pattern, p, e in self._wild if s == scheme and p == port and pattern.fullmatch(host)]
            found.sort(key=lambda e: len(e[0]), reverse=True)
            if len(self._resolved) < _ORIGIN_CACHE_LIMIT:
                self._resolved[origin] = found
        return found

    def match(self, scheme: str, host: str, port: int | None, path: str) -> Route | None:
        """The provider route of a request URL, or None for anything else (remembered per URL path)."""
        key = (scheme, host, port, path)
        try:
            return self._matched[key]
        except KeyError:
            pass
        route = self._match(scheme, host, port, path)
        if len(self._matched) < _MATCH_CACHE_LIMIT:  # a notebook calls a handful of URLs, over and over
            self._matched[key] = route
        return route

    def _match(self, scheme: str, host: str, port: int | None, path: str) -> Route | None:
        entries = self._entries(_origin(scheme, host, port))
        if not entries:
            return None
        for prefix, provider, proxied in entries:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            found = _find(provider, rest)
            optional = provider.optional_prefix
            if found is None and optional and rest.startswith(optional + "/"):
                rest = rest[len(optional) :]  # a gateway base given without /v1
                found = _find(provider, rest)
                prefix += optional
            if found is None:
                continue
            endpoint, params = found
            base = f"{scheme}://{host}" + (f":{port}" if port else "") + prefix
            if optional:
                base = base.removesuffix(optional)
            return Route(provider.name, endpoint.operation, proxied, base, endpoint, rest, params)
        return None


def _find(provider: Provider, rest: str) -> tuple[Endpoint, Mapping[str, str]] | None:
    for endpoint in provider.endpoints:
        if "{" not in endpoint.template:
            if rest == endpoint.template:
                return endpoint, _NO_PARAMS
            continue
        matched = _template(endpoint.template).fullmatch(rest)
        if matched:
            params = matched.groupdict()
            if "%" in rest:
                params = {name: unquote(value) for name, value in params.items()}
            return endpoint, params
    return None


def client_route(provider: str, scheme: str, host: str, port: int | None, path: str) -> Route | None:
    """The route of a request from a client known to be ``provider``'s, on any host (a boto3
    ``bedrock-runtime`` client given an ``endpoint_url``: a VPC endpoint, the emulator)."""
    found = _find(PROVIDERS[provider], path)
    if found is None:
        return None
    endpoint, params = found
    base = f"{scheme}://{host}" + (f":{port}" if port else "")
    return Route(provider, endpoint.operation, False, base, endpoint, path, params)
