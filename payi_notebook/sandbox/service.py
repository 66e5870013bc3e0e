"""The sandbox's Pay-i REST surface: auth, ingest, bulk ingest, results, introspection.

``create_app`` assembles these routes with the limit routes and the proxy routes behind one
gate that checks ``xProxy-api-key`` on every request and applies injected faults, so a
refusal never reaches a handler and nothing is stored for it.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import attribution, errors, spec
from .bedrock_proxy import BedrockProxy
from .faults import Faults, parse_fault
from .limits_api import LimitsApi
from .proxy import Proxy
from .record import Event, Recorded, Recorder, iso, utc_now
from .requests_api import RequestsApi
from .store import MAX_SEQ, Store
from .use_cases import UseCases
from .use_cases_api import UseCasesApi

API_KEY_HEADER = b"xproxy-api-key"
# The largest request body the sandbox reads (413 past it); Pay-i documents none. Ingest and
# proxy bodies hold a prompt and its response: 32 MiB leaves room for inline images.
MAX_BODY_BYTES = 32 * 2**20
FUTURE_TOLERANCE = timedelta(minutes=5)
# Body fields that become the event's own columns; the rest are kept as details.
EVENT_FIELDS = {
    "category",
    "resource",
    "units",
    "event_timestamp",
    "provider_response_id",
    "properties",
    "use_case_properties",
}
BULK_ATTRIBUTION_FIELDS = {
    "limit_ids",
    "request_tags",
    "user_id",
    "use_case_id",
    "use_case_name",
    "use_case_version",
    "use_case_step",
    "account_name",
    "scope",
}


def route_kind(path: str) -> str | None:
    """Which fault ``route`` a request path belongs to (None: not a Pay-i API route)."""
    if path.startswith("/api/v1/proxy/"):
        return "proxy"
    if path.rstrip("/") == "/api/v1/ingest":
        return "ingest"
    if path.startswith("/api/v1/ingest/bulk"):
        return "bulk"
    if path.startswith("/api/v1/limits"):
        return "limits"
    if path.startswith("/api/v1/requests"):
        return "requests"
    if path.startswith(("/api/v1/use_cases", "/api/v1/reports")):
        return "use_cases"
    return None


def _too_large(size: int | None = None) -> errors.PayiError:
    got = f" ({size} bytes)" if size is not None else ""
    return errors.PayiError(
        413,
        errors.REQUEST_PROCESSING_ERROR,
        f"request body is larger than the sandbox's {MAX_BODY_BYTES} byte cap{got}; send less per request",
    )


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises a 413 once more than ``limit`` body bytes have arrived."""
    seen = 0

    async def capped() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large()
        return message

    return capped


class Gate:
    """ASGI middleware: Pay-i auth on every route, the body-size cap, then any injected fault."""

    def __init__(self, app: ASGIApp, api_key: str, faults: Faults, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self._key = api_key.encode()
        self.faults = faults
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == API_KEY_HEADER), b"")
        if not hmac.compare_digest(given, self._key):
            problem = "missing" if not given else "invalid"
            refusal = errors.PayiError(
                401, errors.INVALID_API_KEY, f"xProxy-api-key header is {problem}; send your Pay-i API key"
            )
            await refusal.response()(scope, receive, send)
            return
        length = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if length.isdigit() and int(length) > self.max_body:  # refused before a byte of it is read
            await _too_large(int(length)).response()(scope, receive, send)
            return
        kind = route_kind(scope["path"])
        fault = self.faults.take(kind) if kind else None
        if fault is not None:
            await fault.error().response()(scope, receive, send)
            return
        await self.app(scope, _capped(receive, self.max_body), send)


def _event_timestamp(value: str | None, now: datetime) -> datetime:
    """The body's event time (schema-checked RFC 3339), refused if more than 5 min ahead."""
    if value is None:
        return now
    moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    if moment - now > FUTURE_TOLERANCE:
        raise errors.bad_request(
            errors.INVALID_TIMESTAMP,
            f"event_timestamp: {value} is more than 5 minutes in the future; send the time the request was made (UTC)",
        )
    return moment


def _event(source: str, body: dict[str, Any], who: attribution.Attribution) -> Event:
    now = utc_now()
    ignored = EVENT_FIELDS | BULK_ATTRIBUTION_FIELDS
    return Event(
        source=source,
        category=body["category"],
        resource=body.get("resource"),
        units={key: dict(value) for key, value in body["units"].items()},
        event_timestamp=_event_timestamp(body.get("event_timestamp"), now),
        attribution=who,
        provider_response_id=body.get("provider_response_id") or None,
        http_status_code=body.get("http_status_code"),
        details={key: value for key, value in body.items() if key not in ignored},
        received=body,
    )


def _api_error(exc: errors.PayiError) -> dict[str, Any]:
    """An ``ApiError`` (no ``xproxy_result``), as bulk's per-item errors carry."""
    body = exc.body()
    body.pop("xproxy_result", None)
    return body


class Service:
    """Ingest, bulk ingest, result lookups and the /sandbox/v1 introspection routes."""

    def __init__(self, store: Store, recorder: Recorder, faults: Faults) -> None:
        self.store = store
        self.recorder = recorder
        self.faults = faults

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/ingest", self.ingest, methods=["POST"]),
            Route("/api/v1/ingest/bulk", self.bulk, methods=["POST"]),
            Route("/api/v1/requests/{request_id}/result", self.result, methods=["GET"]),
            Route(
                "/api/v1/requests/provider/{category}/{provider_response_id}/result",
                self.provider_result,
                methods=["GET"],
            ),
            Route("/sandbox/v1/events", self.events, methods=["GET"]),
            Route("/sandbox/v1/faults", self.list_faults, methods=["GET"]),
            Route("/sandbox/v1/faults", self.add_fault, methods=["POST"]),
            Route("/sandbox/v1/faults", self.clear_faults, methods=["DELETE"]),
        ]

    async def ingest(self, request: Request) -> JSONResponse:
        spec.check_headers("/api/v1/ingest", "post", request.headers)
        body = spec.parse_json(await request.body())
        spec.validate_body(spec.INGEST_REQUEST, body)
        who = attribution.from_headers(request.headers, proxy=False)
        who = replace(who, properties=body.get("properties"), use_case_properties=body.get("use_case_properties"))
        who.check()
        recorded = self.recorder.record(_event("ingest", body, who))
        return JSONResponse(self._ingest_response(recorded))

    @staticmethod
    def _ingest_response(recorded: Recorded) -> dict[str, Any]:
        return {
            "request_id": recorded.request_id,
            "ingest_timestamp": recorded.ingest_timestamp,
            "event_timestamp": recorded.event_timestamp,
            "xproxy_result": recorded.xproxy_result,
        }

    async def bulk(self, request: Request) -> JSONResponse:
        """Each item is validated and stored on its own: valid items count even if others fail."""
        failures: list[dict[str, Any]] = []
        ingested = total = 0
        try:
            items = spec.parse_json(await request.body())
            if not isinstance(items, list):
                raise errors.bad_request(
                    errors.REQUEST_PROCESSING_ERROR, "request body must be a JSON array of BulkIngestRequest items"
                )
        except errors.PayiError as exc:
            failures.append({"xproxy_result": _api_error(exc)})
            items = []
        for index, item in enumerate(items):
            total += 1
            try:
                spec.validate_body(spec.BULK_INGEST_REQUEST, item)
                who = attribution.from_bulk_item(item)
                who.check()
                self.recorder.record(_event("bulk", item, who))
                ingested += 1
            except errors.PayiError as exc:
                failures.append({"item_index": index, "xproxy_result": _api_error(exc)})
        body = {
            "request_id": str(uuid.uuid4()),
            "ingest_timestamp": iso(utc_now()),
            "ingest_count": ingested,
            "error_count": len(failures),
            "item_error_count": sum(1 for failure in failures if "item_index" in failure),
            "errors": failures,
            "total_count": total,
        }
        return JSONResponse(body, status_code=400 if failures else 200)

    async def result(self, request: Request) -> JSONResponse:
        request_id = request.path_params["request_id"]
        return self._result(self.store.event(request_id), f"request {request_id!r}")

    async def provider_result(self, request: Request) -> JSONResponse:
        category = request.path_params["category"]
        provider_response_id = request.path_params["provider_response_id"]
        found = self.store.event_by_provider_id(category, provider_response_id)
        return self._result(found, f"provider response {provider_response_id!r} in category {category!r}")

    @staticmethod
    def _result(record: dict[str, Any] | None, what: str) -> JSONResponse:
        if record is None:
            raise errors.PayiError(404, errors.REQUEST_NOT_FOUND, f"{what} not found")
        return JSONResponse({"xproxy_result": record["xproxy_result"]})

    async def events(self, request: Request) -> JSONResponse:
        after = request.query_params.get("after", "0")
        if not (after.isascii() and after.isdigit()) or len(after) > 19 or int(after) > MAX_SEQ:
            raise errors.bad_request(
                errors.REQUEST_PROCESSING_ERROR,
                f"after: {after[:40]!r} must be an integer from 0 to {MAX_SEQ} (an event seq)",
            )
        return JSONResponse({"events": self.store.events(int(after))})

    async def list_faults(self, request: Request) -> JSONResponse:
        return JSONResponse({"faults": [fault.wire() for fault in self.faults.pending()]})

    async def add_fault(self, request: Request) -> JSONResponse:
        self.faults.add(parse_fault(spec.parse_json(await request.body())))
        return await self.list_faults(request)

    async def clear_faults(self, request: Request) -> JSONResponse:
        return JSONResponse({"cleared": self.faults.clear()})


async def _payi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.PayiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in Pay-i's error shape."""
    assert isinstance(exc, HTTPException)
    code = errors.NOT_FOUND if exc.status_code == 404 else errors.METHOD_NOT_ALLOWED
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return errors.PayiError(exc.status_code, code, message, headers=exc.headers).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    return errors.PayiError(500, errors.UNEXPECTED_ERROR, f"unexpected sandbox error: {type(exc).__name__}").response()


def create_app(
    store: Store, recorder: Recorder, api_key: str, faults: Faults, proxy: Proxy, strict_use_cases: bool = False
) -> ASGIApp:
    """The sandbox's ASGI app (Pay-i API, proxy routes, /sandbox/v1) behind the auth gate.

    ``strict_use_cases``: calls naming an undefined use case are refused with ``use_case_not_found``.
    """
    use_cases = recorder.use_cases = UseCases(store, strict=strict_use_cases)
    routes = [
        *Service(store, recorder, faults).routes(),
        *LimitsApi(store).routes(),
        *UseCasesApi(use_cases).routes(),
        *RequestsApi(store, use_cases).routes(),
        *proxy.routes(),
        *BedrockProxy(proxy).routes(),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={errors.PayiError: _payi_error, HTTPException: _http_error, Exception: _unexpected},
    )
    return Gate(app, api_key, faults)
