"""Pay-i REST client: ingest, bulk ingest, limits and request results, sync and async.

Each endpoint is written once as a small request plan (``plans``) that both
``PayiClient`` (sync) and ``AsyncPayiClient`` (async) execute, so the two never drift.
Errors carry Pay-i's stable ``xproxy_error.code`` and say whether a retry can help. The
API key is attached per request by an ``httpx.Auth`` that hides it, so it never shows in
a repr, a log line or an exception.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from importlib import metadata
from typing import Any

import httpx

from .. import xproxy
from ..config import check_base_url
from ..secret import Secret
from .errors import PayiError, PayiUnavailable, parse_retry_after
from .plans import (
    Call,
    Plan,
    create_limit_plan,
    ingest_bulk_plan,
    ingest_plan,
    limit_plan,
    list_limits_plan,
    provider_result_plan,
    request_result_plan,
    update_limit_plan,
)

__all__ = [
    "API_PREFIX",
    "USER_AGENT",
    "AsyncPayiClient",
    "PayiClient",
    "PayiError",
    "PayiUnavailable",
    "Plan",
    "check_endpoint",
    "parse_retry_after",
]

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _version() -> str:
    try:
        return metadata.version("payi_notebook")
    except metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"payi_notebook/{_version()}"


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


def _accepts_json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def check_endpoint(base_url: str, api_key: str | Secret) -> Secret:
    """Refuse a base URL that is not http(s) or an empty key, before anything is sent; the key as a ``Secret``."""
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be an http(s) URL like https://api.pay-i.com, got {base_url!r}")
    check_base_url(base_url)
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

    def _result(self, call: Call, response: httpx.Response) -> Any:
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

    def _unavailable(self, call: Call, exc: httpx.TransportError) -> PayiUnavailable:
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
