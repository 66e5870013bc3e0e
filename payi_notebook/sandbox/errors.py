"""Pay-i error bodies: ``{statusCode, message, xproxy_error{code, message}}`` and friends.

Every refusal the sandbox makes goes through ``PayiError`` so that status, stable ``code``
and wording stay consistent across routes, and the body always fits the spec's
``ApiError`` / ``ProxyApiError`` schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

INVALID_API_KEY = "invalid_api_key"
HEADER_IS_MISSING = "header_is_missing"
UNEXPECTED_ERROR = "unexpected_error"
REQUEST_PROCESSING_ERROR = "request_processing_error"
REQUIRED_FIELD_MISSING = "required_field_missing"
INVALID_JSON = "invalid_json"
INVALID_TIMESTAMP = "invalid_ingest_event_timestamp"
BLOCKING_LIMIT_NOT_ALLOWED = "blocking_limit_not_allowed"
INVALID_USE_CASE_NAME = "invalid_use_case_name"
INVALID_TAGS = "invalid_tags"
INVALID_LIMIT_IDS = "invalid_limit_ids"
DUPLICATE_LIMIT_ID = "duplicate_limit_id"
LIMIT_REACHED = "limit_reached"
LIMIT_NOT_FOUND = "limit_not_found"
LIMIT_NAME_EXISTS = "limit_name_already_exist"
INVALID_MAX_LIMIT = "invalid_max_limit"
INVALID_MAX_LIMIT_UPDATE = "invalid_max_limit_update"
CREATE_LIMIT_FAILED = "create_limit_validation_failed"
UPDATE_LIMIT_FAILED = "update_limit_validation_failed"
REQUEST_NOT_FOUND = "request_not_found"
PROVIDER_ERROR = "provider_error"
INVALID_PROVIDER_URI = "invalid_provider_uri"
RATE_LIMITED = "too_many_requests"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"


class PayiError(Exception):
    """A refusal with Pay-i's wire shape; ``result`` adds ``xproxy_result`` (ProxyApiError)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        result: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        summary: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.result = result
        self.headers = headers
        self.summary = summary

    def body(self) -> dict[str, Any]:
        """The JSON body; top-level ``message`` repeats the detail unless a summary was given."""
        body: dict[str, Any] = {
            "statusCode": self.status,
            "message": self.summary or self.message,
            "xproxy_error": {"code": self.code, "message": self.message},
        }
        if self.result is not None:
            body["xproxy_result"] = self.result
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(code: str, message: str) -> PayiError:
    return PayiError(400, code, message)
