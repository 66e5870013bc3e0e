"""Error responses in each provider's wire format.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class ApiError(Exception):
    """An HTTP error to answer with, in whichever provider's format the route speaks."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def _openai_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error(error: ApiError, request_id: str) -> Response:
    body = {
        "error": {
            "message": error.message,
            "type": _openai_type(error.status),
            "param": error.param,
            "code": error.code,
        }
    }
    return _json(error, body, {"x-request-id": request_id})


def anthropic_error(error: ApiError, request_id: str) -> Response:
    kind = _ANTHROPIC_TYPES.get(error.status) or ("api_error" if error.status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": request_id}
    return _json(error, body, {"request-id": request_id})


def _json(error: ApiError, body: object, headers: dict[str, str]) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=error.status,
        headers={**error.headers, **headers},
        media_type="application/json",
    )


def require_credential(headers: Mapping[str, str], key_headers: tuple[str, ...], message: str, code: str | None = None) -> None:
    """Any non-empty key in one of ``key_headers``, or a bearer token; else a 401 saying what to send."""
    if any(headers.get(name, "").strip() for name in key_headers):
        return
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return
    raise ApiError(401, message, code=code)
