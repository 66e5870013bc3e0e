"""Pay-i REST client: ingest, bulk ingest, limits and request results, sync and async.

Each endpoint is written once as a small request plan (``_Call``) that both
``PayiClient`` (sync) and ``AsyncPayiClient`` (async) execute, so the two never drift.
Errors carry Pay-i's stable ``xproxy_error.code`` and say whether a retry can help. The
API key is attached per request by an ``httpx.Auth`` that hides it, so it never shows in
a repr, a log line or an exception.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx

from . import limit_rules, xproxy
from .limit_rules import LIMIT_TYPES
from .secret import Secret

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_RETRYABLE_STATUS = frozenset({408, 429})


def _version() -> str:
    try:
        return metadata.version("payi_notebook")
    except metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"payi_notebook/{_version()}"


class PayiError(Exception):
    """Pay-i refused a request. ``code`` is Pay-i's stable ``xproxy_error.code`` (may be None)."""

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        xproxy_result: dict[str, Any] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.xproxy_result = xproxy_result
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True when sending the same request again later can succeed (408, 429, 5xx)."""
        return self.status is not None and (self.status in _RETRYABLE_STATUS or self.status >= 500)

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"Pay-i answered {self.status}{code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class PayiUnavailable(PayiError):
    """Pay-i could not be reached (connection refused, reset, timeout); always retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(None, None, message)

    @property
    def retryable(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"Pay-i unreachable: {self.message}"


class _ApiKeyAuth(httpx.Auth):
    """Adds ``xProxy-api-key`` to each request; the key stays in a ``Secret`` until then."""

    __slots__ = ("_key",)

    def __init__(self, key: Secret) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["xProxy-api-key"] = self._key.reveal()
        yield request

    def scrub(self, text: str) -> str:
        """``text`` with the key blanked out (as a whole token), in case a server echoes it."""
        return self._key.mask(text)


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP request. A body on an ``accept`` status holding ``accept_key`` is still the answer."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    accept: frozenset[int] = field(default_factory=frozenset)
    accept_key: str | None = None
    text: bool = False  # the answer is the body as text (CSV reports), not JSON


# A request plan: yields calls, receives their parsed answers, returns the result.
Plan = Generator[_Call, Any, Any]


def _single(call: _Call) -> Plan:
    return (yield call)


def _segment(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def _check_max(value: Any) -> float:
    limit_rules.check(limit_rules.max_problem(value))
    return float(value)


def _check_name(value: Any) -> str:
    limit_rules.check(limit_rules.name_problem(value))
    return value


def ingest_plan(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Plan:
    if not isinstance(body, Mapping) or not body.get("category") or "units" not in body:
        raise ValueError("an ingest body needs at least 'category' and 'units'; render it with payi_notebook.wire")
    return _single(_Call("POST", "/ingest", json=dict(body), headers=dict(headers or {})))


def ingest_bulk_plan(items: Sequence[Mapping[str, Any]]) -> Plan:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("bulk ingest needs a non-empty list of items")
    items_json = [dict(item) for item in items]
    return _single(_Call("POST", "/ingest/bulk", json=items_json, accept=frozenset({400}), accept_key="ingest_count"))


def list_limits_plan(name: str | None = None, page_size: int = 100) -> Plan:
    if name is not None and not isinstance(name, str):
        raise ValueError(f"limit name filter must be a string, got {name!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    return _pages(name, page_size)


def _pages(name: str | None, page_size: int) -> Plan:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": page_size}
        if name:
            params["limit_name"] = name
        if cursor:
            params["cursor"] = cursor
        page = yield _Call("GET", "/limits", params=params)
        batch = page.get("items") or []
        items.extend(batch)
        next_cursor = page.get("cursor")
        if not batch or not next_cursor or next_cursor == cursor:
            return items
        cursor = next_cursor


def create_limit_plan(
    name: str,
    max: float,
    limit_type: str = "allow",
    threshold: float | None = None,
    limit_id: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> Plan:
    body: dict[str, Any] = {"limit_name": _check_name(name), "max": _check_max(max)}
    if limit_type not in LIMIT_TYPES:
        raise ValueError(f"limit_type must be 'allow' or 'block', got {limit_type!r}")
    body["limit_type"] = limit_type
    if threshold is not None:
        limit_rules.check(limit_rules.threshold_problem(threshold))
        body["threshold"] = float(threshold)
    if limit_id is not None:
        limit_rules.check(limit_rules.id_problem(limit_id))
        body["limit_id"] = limit_id
    if properties is not None:
        if not isinstance(properties, Mapping) or not all(isinstance(k, str) and k for k in properties):
            raise ValueError("properties must be a mapping of non-empty string keys to strings")
        body["properties"] = {k: None if v is None else str(v) for k, v in properties.items()}
    return _single(_Call("POST", "/limits", json=body))


def update_limit_plan(limit_id: str, max: float | None = None, name: str | None = None) -> Plan:
    path = f"/limits/{_segment('limit_id', limit_id)}"
    if max is None and name is None:
        raise ValueError("update_limit needs max=... or name=...")
    body: dict[str, Any] = {}
    if max is not None:
        body["max"] = _check_max(max)
    if name is not None:
        body["limit_name"] = _check_name(name)
    return _single(_Call("PUT", path, json=body))


def limit_plan(method: str, limit_id: str, suffix: str = "") -> Plan:
    """GET / DELETE a limit, or POST its ``/reset``."""
    return _single(_Call(method, f"/limits/{_segment('limit_id', limit_id)}{suffix}"))


def request_result_plan(request_id: str) -> Plan:
    return _single(_Call("GET", f"/requests/{_segment('request_id', request_id)}/result"))


def provider_result_plan(category: str, provider_response_id: str) -> Plan:
    pid = _segment("provider_response_id", provider_response_id)
    return _single(_Call("GET", f"/requests/provider/{_segment('category', category)}/{pid}/result"))


def _accepts_json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def check_endpoint(base_url: str, api_key: str | Secret) -> Secret:
    """Refuse a base URL that is not http(s) or an empty key, before anything is sent; the key as a ``Secret``."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL like https://api.pay-i.com, got {base_url!r}")
    if isinstance(api_key, Secret):
        api_key = api_key.reveal()
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError("api_key must be a non-empty string (set PAYI_API_KEY)")
    return Secret(api_key.strip())


class _Transport:
    """What both clients share: settings, headers, and turning a response into a result or an error."""

    def __init__(self, base_url: str, api_key: str | Secret, timeout: float | httpx.Timeout | None) -> None:
        key = check_endpoint(base_url, api_key)
        self.base_url = base_url.rstrip("/")
        self._auth = _ApiKeyAuth(key)
        self._timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._headers = {"User-Agent": USER_AGENT, "xProxy-Instrumented-Module": USER_AGENT}

    def _result(self, call: _Call, response: httpx.Response) -> Any:
        if call.text and response.is_success:
            return response.text
        data = _accepts_json(response)
        if response.is_success or (
            response.status_code in call.accept and isinstance(data, dict) and call.accept_key in data
        ):
            if response.is_success and data is None and response.content:
                raise PayiError(response.status_code, None, f"{call.method} {call.path} answered with non-JSON content")
            return data
        raise self._error(response, data)

    def _error(self, response: httpx.Response, data: Any) -> PayiError:
        code = message = None
        result = None
        if isinstance(data, dict):
            err = data.get("xproxy_error") or {}
            code = err.get("code") if isinstance(err, dict) else None
            message = (err.get("message") if isinstance(err, dict) else None) or data.get("message")
            result = xproxy.of_body(data)
        if not message:
            message = response.reason_phrase or "no error message"
            text = response.text.strip()
            if text and data is None:
                message = f"{message}: {text[:200]}"
        return PayiError(
            response.status_code,
            code,
            self._auth.scrub(str(message)),
            xproxy_result=result,
            body=data,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def _unavailable(self, call: _Call, exc: httpx.TransportError) -> PayiUnavailable:
        kind = type(exc).__name__
        detail = self._auth.scrub(str(exc)) or "no detail"
        return PayiUnavailable(f"{call.method} {self.base_url}{API_PREFIX}{call.path} failed ({kind}: {detail})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class PayiClient(_Transport):
    """Synchronous Pay-i client over ``httpx.Client``; use as a context manager or call ``close()``."""

    def __init__(self, base_url: str, api_key: str | Secret, *, timeout: float | httpx.Timeout | None = None) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX, auth=self._auth, headers=self._headers, timeout=self._timeout
        )

    def _run(self, plan: Plan) -> Any:
        answer = None
        try:
            while True:
                call = plan.send(answer)
                try:
                    response = self._http.request(
                        call.method, call.path, params=call.params, json=call.json, headers=call.headers
                    )
                except httpx.TransportError as exc:
                    raise self._unavailable(call, exc) from None
                answer = self._result(call, response)
        except StopIteration as done:
            return done.value

    def run(self, plan: Plan) -> Any:
        """Execute a request plan from elsewhere (``payi_notebook.analytics.routes``)."""
        return self._run(plan)

    def ingest(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """POST /ingest: one event; returns the IngestResponse (with ``xproxy_result``)."""
        return self._run(ingest_plan(body, headers))

    def ingest_bulk(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST /ingest/bulk; returns the BulkIngestResponse, also when Pay-i rejected some items (400)."""
        return self._run(ingest_bulk_plan(items))

    def list_limits(self, name: str | None = None, *, page_size: int = 100) -> list[dict[str, Any]]:
        """Every limit (following the cursor), optionally only those named ``name``."""
        return self._run(list_limits_plan(name, page_size))

    def get_limit(self, limit_id: str) -> dict[str, Any]:
        return self._run(limit_plan("GET", limit_id))

    def create_limit(
        self,
        name: str,
        max: float,
        limit_type: str = "allow",
        threshold: float | None = None,
        limit_id: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a limit (``max`` in USD); returns the LimitResponse."""
        return self._run(create_limit_plan(name, max, limit_type, threshold, limit_id, properties))

    def update_limit(self, limit_id: str, max: float | None = None, name: str | None = None) -> dict[str, Any]:
        return self._run(update_limit_plan(limit_id, max, name))

    def delete_limit(self, limit_id: str) -> dict[str, Any]:
        return self._run(limit_plan("DELETE", limit_id))

    def reset_limit(self, limit_id: str) -> dict[str, Any]:
        """Set the limit's spend back to $0 (its history is kept)."""
        return self._run(limit_plan("POST", limit_id, "/reset"))

    def request_result(self, request_id: str) -> dict[str, Any]:
        return self._run(request_result_plan(request_id))

    def provider_result(self, category: str, provider_response_id: str) -> dict[str, Any]:
        """The ``xproxy_result`` Pay-i keeps for a provider response id (how bulk-sent rows get their cost)."""
        return self._run(provider_result_plan(category, provider_response_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PayiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPayiClient(_Transport):
    """Asynchronous Pay-i client over ``httpx.AsyncClient``; same methods as ``PayiClient``, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | Secret,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_connections: int = 16,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            auth=self._auth,
            headers=self._headers,
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def _run(self, plan: Plan) -> Any:
        answer = None
        try:
            while True:
                call = plan.send(answer)
                try:
                    response = await self._http.request(
                        call.method, call.path, params=call.params, json=call.json, headers=call.headers
                    )
                except httpx.TransportError as exc:
                    raise self._unavailable(call, exc) from None
                answer = self._result(call, response)
        except StopIteration as done:
            return done.value

    async def run(self, plan: Plan) -> Any:
        """Execute a request plan from elsewhere (``payi_notebook.analytics.routes``)."""
        return await self._run(plan)

    async def ingest(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._run(ingest_plan(body, headers))

    async def ingest_bulk(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return await self._run(ingest_bulk_plan(items))

    async def provider_result(self, category: str, provider_response_id: str) -> dict[str, Any]:
        return await self._run(provider_result_plan(category, provider_response_id))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPayiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
