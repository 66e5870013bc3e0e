"""The ``/api/v1/limits`` routes: create, list, get, update, delete, properties, reset.

Statuses follow the spec per route: it gives these routes 400 (not 404) for a missing limit,
except the properties PUT, which has a 404.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import limit_rules
from . import errors, spec
from .limits import ALLOW, Limit, check_max, check_name, check_threshold
from .record import iso, utc_now
from .store import MAX_SEQ, Store

DEFAULT_PAGE = 50
MAX_PAGE = 1000


def _request_id() -> str:
    return str(uuid.uuid4())


def _limit_response(limit: Limit, message: str | None = None, status: int = 200) -> JSONResponse:
    body: dict[str, Any] = {"request_id": _request_id(), "limit": limit.wire()}
    if message:
        body["message"] = message
    return JSONResponse(body, status_code=status)


def _not_found(limit_id: str, status: int = 400) -> errors.PayiError:
    return errors.PayiError(status, errors.LIMIT_NOT_FOUND, f"limit {limit_id!r} not found")


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": seq}).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        after = json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        after = None
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_SEQ:
        raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, "cursor: not a cursor this API returned")
    return after


def _query_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, f"{name}: {value!r} must be true or false")


def _query_count(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PAGE:
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, f"limit: {value!r} must be an integer from 1 to {MAX_PAGE}"
        )
    return count


class LimitsApi:
    """Limit CRUD over the store; every write runs in one immediate transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/limits", self.create, methods=["POST"]),
            Route("/api/v1/limits", self.list_limits, methods=["GET"]),
            Route("/api/v1/limits/{limit_id}", self.get, methods=["GET"]),
            Route("/api/v1/limits/{limit_id}", self.update, methods=["PUT"]),
            Route("/api/v1/limits/{limit_id}", self.delete, methods=["DELETE"]),
            Route("/api/v1/limits/{limit_id}/properties", self.properties, methods=["PUT"]),
            Route("/api/v1/limits/{limit_id}/reset", self.reset, methods=["POST"]),
        ]

    async def create(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(spec.CREATE_LIMIT, body, code=errors.CREATE_LIMIT_FAILED)
        maximum = check_max(body["max"], errors.CREATE_LIMIT_FAILED)
        threshold = check_threshold(body.get("threshold"))
        name = check_name(body["limit_name"], errors.CREATE_LIMIT_FAILED)
        limit_type = body.get("limit_type") or ALLOW
        limit_id = body.get("limit_id")
        problem = None if limit_id is None else limit_rules.id_problem(limit_id)
        if problem is not None:  # e.g. "team/q4": it could never be read, updated or deleted
            raise errors.bad_request(errors.CREATE_LIMIT_FAILED, f"limit_id: {problem}")
        now = iso(utc_now())
        with self.store.transaction() as db:
            if limit_id is not None:
                existing = self.store.limits_by_id(db, [limit_id]).get(limit_id)
                if existing is not None:
                    if existing.same_settings(maximum, threshold, limit_type, name):
                        return _limit_response(existing, "Limit already exists")
                    raise errors.bad_request(
                        errors.CREATE_LIMIT_FAILED,
                        f"limit_id {limit_id!r} already exists with other settings; "
                        f"change it with PUT /api/v1/limits/{limit_id} or pick another limit_id",
                    )
            if self.store.limit_by_name(db, name) is not None:
                raise errors.bad_request(
                    errors.LIMIT_NAME_EXISTS, f"limit_name {name!r} is already used by another limit"
                )
            limit = Limit(
                limit_id=limit_id or str(uuid.uuid4()),
                limit_name=name,
                max=maximum,
                threshold=threshold,
                limit_type=limit_type,
                created=now,
                updated=now,
                properties=body.get("properties"),
            )
            self.store.insert_limit(db, limit)
        return _limit_response(limit, "Limit created", status=201)

    async def list_limits(self, request: Request) -> JSONResponse:
        query = request.query_params
        ascending = _query_bool("sort_ascending", query.get("sort_ascending"), default=True)
        count = _query_count(query.get("limit"))
        after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        page = self.store.list_limits(query.get("limit_name"), ascending, after, count + 1)
        more = len(page) > count
        page = page[:count]
        body: dict[str, Any] = {
            "request_id": _request_id(),
            "cursor": _encode_cursor(page[-1][0]) if more else None,
            "items": [limit.wire() for _, limit in page],
        }
        return JSONResponse(body)

    async def get(self, request: Request) -> JSONResponse:
        limit_id = request.path_params["limit_id"]
        limit = self.store.limit(limit_id)
        if limit is None:
            raise _not_found(limit_id)
        return _limit_response(limit)

    async def update(self, request: Request) -> JSONResponse:
        limit_id = request.path_params["limit_id"]
        body = spec.parse_json(await request.body())
        spec.validate_body(spec.UPDATE_LIMIT, body, code=errors.UPDATE_LIMIT_FAILED)
        maximum = None if body.get("max") is None else check_max(body["max"], errors.UPDATE_LIMIT_FAILED)
        name = None if body.get("limit_name") is None else check_name(body["limit_name"], errors.UPDATE_LIMIT_FAILED)
        with self.store.transaction() as db:
            limit = self.store.limits_by_id(db, [limit_id]).get(limit_id)
            if limit is None:
                raise _not_found(limit_id)
            if maximum is not None:
                if maximum < limit.cost_total:
                    raise errors.bad_request(
                        errors.INVALID_MAX_LIMIT_UPDATE,
                        f"max: {maximum} is below the limit's current spend of {limit.cost_total}; "
                        "reset the limit or choose a higher max",
                    )
                limit.max = maximum
            if name is not None and name != limit.limit_name:
                if self.store.limit_by_name(db, name) is not None:
                    raise errors.bad_request(
                        errors.LIMIT_NAME_EXISTS, f"limit_name {name!r} is already used by another limit"
                    )
                limit.limit_name = name
            limit.updated = iso(utc_now())
            self.store.save_limit(db, limit)
        return _limit_response(limit, "Limit updated")

    async def delete(self, request: Request) -> JSONResponse:
        limit_id = request.path_params["limit_id"]
        with self.store.transaction() as db:
            if not self.store.delete_limit(db, limit_id):
                raise _not_found(limit_id)
        return JSONResponse({"request_id": _request_id(), "message": "Limit deleted"})

    async def properties(self, request: Request) -> JSONResponse:
        limit_id = request.path_params["limit_id"]
        body = spec.parse_json(await request.body())
        spec.validate_body(spec.PROPERTIES_REQUEST, body, code=errors.UPDATE_LIMIT_FAILED)
        with self.store.transaction() as db:
            limit = self.store.limits_by_id(db, [limit_id]).get(limit_id)
            if limit is None:
                raise _not_found(limit_id, status=404)
            merged = {**(limit.properties or {}), **body["properties"]}
            limit.properties = {key: value for key, value in merged.items() if value is not None}
            limit.updated = iso(utc_now())
            self.store.save_limit(db, limit)
        return JSONResponse(
            [{"request_id": _request_id(), "message": "Limit properties updated", "limit": limit.wire()}]
        )

    async def reset(self, request: Request) -> JSONResponse:
        limit_id = request.path_params["limit_id"]
        reset_at = utc_now()
        if request.query_params.get("resetDate"):
            text = request.query_params["resetDate"]
            try:
                reset_at = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
            except ValueError:
                raise errors.bad_request(
                    errors.REQUEST_PROCESSING_ERROR, f"resetDate: {text!r} is not a date-time"
                ) from None
            if reset_at.tzinfo is None:
                raise errors.bad_request(
                    errors.REQUEST_PROCESSING_ERROR, f"resetDate: {text!r} needs a UTC offset (e.g. Z)"
                )
        with self.store.transaction() as db:
            limit = self.store.limits_by_id(db, [limit_id]).get(limit_id)
            if limit is None:
                raise _not_found(limit_id)
            history = {
                "limit_id": limit.limit_id,
                "limit_name": limit.limit_name,
                "limit_reset_timestamp": iso(reset_at),
                "limit_type": limit.limit_type,
                "max": limit.max,
                "totals": limit.totals(),
            }
            limit.reset()
            limit.updated = iso(utc_now())
            self.store.save_limit(db, limit)
        return JSONResponse({"request_id": _request_id(), "message": "Limit reset", "limit_history": history})
