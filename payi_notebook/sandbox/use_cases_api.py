"""The ``/api/v1/use_cases/...`` routes: definitions, versions, default limits, instances, KPIs, scores.

Bodies are validated against the spec's schemas; use case and KPI routes answer 404 for what
does not exist (the spec gives them one) and 400 for what already does.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import errors, spec
from .attribution import USE_CASE_NAME
from .kpis import KPI_EXISTS, Kpi
from .limits_api import _decode_cursor, _encode_cursor, _query_bool, _query_count
from .record import iso, utc_now
from .use_cases import INSTANCE_NOT_FOUND, USE_CASE_EXISTS, Definition, UseCases

PREFIX = "/api/v1/use_cases"
DEFINITION_REQUEST = "PayI.Calculator.Models.UseCaseDefinitionRequest"
UPDATE_DEFINITION = "PayI.Calculator.Models.UpdateUseCaseDefinitionRequest"
LIMIT_BASE = "PayI.Common.Models.BudgetManagement.CreateLimitBase"
CREATE_KPI = "PayI.Calculator.Models.CreateKpiRequest"
UPDATE_KPI = "PayI.Calculator.Models.UpdateKpiRequest"


def _rid() -> str:
    return str(uuid.uuid4())


def _page(items: list[Any], count: int, wire: Any) -> JSONResponse:
    more = len(items) > count
    items = items[:count]
    return JSONResponse(
        {
            "request_id": _rid(),
            "cursor": _encode_cursor(items[-1].seq) if more else None,
            "items": [wire(i) for i in items],
        }
    )


def _check_limit_config(config: dict[str, Any] | None) -> None:
    if config is None:
        return
    if not config["max"] > 0:
        raise errors.bad_request(errors.INVALID_MAX_LIMIT, f"limit_config.max: {config['max']} must be above 0")
    threshold = config.get("threshold")
    if threshold is not None and not 0 < threshold <= 1:
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, f"limit_config.threshold: {threshold} must be in (0, 1]"
        )


class UseCasesApi:
    """Route handlers over ``UseCases``; every write is one immediate transaction."""

    def __init__(self, use_cases: UseCases) -> None:
        self.use_cases = use_cases
        self.store = use_cases.store

    def routes(self) -> list[Route]:
        d, i = f"{PREFIX}/definitions", f"{PREFIX}/instances"
        return [
            Route(d, self.list_definitions, methods=["GET"]),
            Route(d, self.create, methods=["POST"]),
            Route(d + "/{name}", self.get, methods=["GET"]),
            Route(d + "/{name}", self.update, methods=["PUT"]),
            Route(d + "/{name}", self.delete, methods=["DELETE"]),
            Route(d + "/{name}/increment_version", self.increment, methods=["POST"]),
            Route(d + "/{name}/limit_config", self.create_limit, methods=["POST"]),
            Route(d + "/{name}/limit_config", self.delete_limit, methods=["DELETE"]),
            Route(d + "/{name}/kpis", self.list_kpis, methods=["GET"]),
            Route(d + "/{name}/kpis", self.create_kpi, methods=["POST"]),
            Route(d + "/{name}/kpis/{kpi}", self.get_kpi, methods=["GET"]),
            Route(d + "/{name}/kpis/{kpi}", self.update_kpi, methods=["PUT"]),
            Route(d + "/{name}/kpis/{kpi}", self.delete_kpi, methods=["DELETE"]),
            Route(i + "/{name}", self.new_instance, methods=["POST"]),
            Route(i + "/{name}/{id}", self.get_instance, methods=["GET"]),
            Route(i + "/{name}/{id}", self.delete_instance, methods=["DELETE"]),
            Route(i + "/{name}/{id}/properties", self.instance_properties, methods=["PUT"]),
            Route(i + "/{name}/{id}/kpis", self.instance_kpis, methods=["GET"]),
            Route(i + "/{name}/{id}/kpis/{kpi}", self.score, methods=["PUT"]),
            Route(i + "/{name}/{id}/value", self.value, methods=["GET"]),
        ]

    # definitions -----------------------------------------------------------------------

    async def list_definitions(self, request: Request) -> JSONResponse:
        query = request.query_params
        ascending = _query_bool("sort_ascending", query.get("sort_ascending"), default=True)
        count = _query_count(query.get("limit"))
        after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        items = self.use_cases.definitions(query.get("use_case_name"), ascending, after, count + 1)
        return _page(items, count, lambda d: d.wire(_rid()))

    async def create(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(DEFINITION_REQUEST, body)
        name = body["name"]
        if not USE_CASE_NAME.fullmatch(name):
            raise errors.bad_request(
                errors.INVALID_USE_CASE_NAME, f"name: {name!r} is invalid; use 1-64 of A-Z a-z 0-9 . _ - (no spaces)"
            )
        if not body["description"].strip():
            raise errors.bad_request("invalid_use_case_description", "description: must not be blank")
        _check_limit_config(body.get("limit_config"))
        with self.store.transaction() as db:
            if self.use_cases.definition(db, name) is not None:
                raise errors.bad_request(
                    USE_CASE_EXISTS, f"use case {name!r} already exists; update it with PUT instead"
                )
            definition = self.use_cases.insert(
                db, Definition(0, name, body["description"], body.get("logging_enabled"), body.get("limit_config"), 1)
            )
        return JSONResponse(definition.wire(_rid()), status_code=201)

    async def get(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            definition = self.use_cases.require(db, request.path_params["name"])
        return JSONResponse(definition.wire(_rid()))

    async def update(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(UPDATE_DEFINITION, body)
        with self.store.transaction() as db:
            definition = self.use_cases.require(db, request.path_params["name"])
            if body.get("description") is not None:
                if not body["description"].strip():
                    raise errors.bad_request("invalid_use_case_description", "description: must not be blank")
                definition.description = body["description"]
            if body.get("logging_enabled") is not None:
                definition.logging_enabled = body["logging_enabled"]
            self.use_cases.save(db, definition)
        return JSONResponse(definition.wire(_rid()))

    async def delete(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            definition = self.use_cases.require(db, request.path_params["name"])
            self.use_cases.delete(db, definition.name)
        return JSONResponse(definition.wire(_rid()))

    async def increment(self, request: Request) -> JSONResponse:
        """A new version; instances created afterwards get it unless they name another."""
        with self.store.transaction() as db:
            definition = self.use_cases.require(db, request.path_params["name"])
            definition.version += 1
            self.use_cases.save(db, definition)
        return JSONResponse(definition.wire(_rid()))

    async def create_limit(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(LIMIT_BASE, body)
        _check_limit_config(body)
        with self.store.transaction() as db:
            definition = self.use_cases.require(db, request.path_params["name"])
            definition.limit_config = body
            self.use_cases.save(db, definition)
        return JSONResponse(definition.wire(_rid()))

    async def delete_limit(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            definition = self.use_cases.require(db, request.path_params["name"])
            definition.limit_config = None
            self.use_cases.save(db, definition)
        return JSONResponse(definition.wire(_rid()))

    # KPI definitions -------------------------------------------------------------------

    async def list_kpis(self, request: Request) -> JSONResponse:
        query = request.query_params
        name = request.path_params["name"]
        with self.store.transaction() as db:
            self.use_cases.require(db, name)
        ascending = _query_bool("sort_ascending", query.get("sort_ascending"), default=True)
        count = _query_count(query.get("limit"))
        after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
        items = self.use_cases.kpis.page(name, query.get("kpi_name"), ascending, after, count + 1)
        return _page(items, count, lambda k: k.wire(_rid()))

    async def create_kpi(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(CREATE_KPI, body)
        name = request.path_params["name"]
        with self.store.transaction() as db:
            self.use_cases.require(db, name)
            if self.use_cases.kpis.get(db, name, body["name"]) is not None:
                raise errors.bad_request(KPI_EXISTS, f"KPI {body['name']!r} already exists for use case {name!r}")
            kpi = self.use_cases.kpis.insert(
                db,
                Kpi(0, name, body["name"], body["description"], body["kpi_type"], body["goal"], iso(utc_now()), None),
            )
        return JSONResponse(kpi.wire(_rid()))

    async def get_kpi(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            self.use_cases.require(db, request.path_params["name"])
            kpi = self.use_cases.kpis.require(db, request.path_params["name"], request.path_params["kpi"])
        return JSONResponse(kpi.wire(_rid()))

    async def update_kpi(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(UPDATE_KPI, body)
        with self.store.transaction() as db:
            self.use_cases.require(db, request.path_params["name"])
            kpi = self.use_cases.kpis.require(db, request.path_params["name"], request.path_params["kpi"])
            if body.get("description") is not None:
                kpi.description = body["description"]
            if body.get("goal") is not None:
                kpi.goal = body["goal"]
            kpi.updated = iso(utc_now())
            self.use_cases.kpis.save(db, kpi)
        return JSONResponse(kpi.wire(_rid()))

    async def delete_kpi(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            self.use_cases.require(db, request.path_params["name"])
            kpi = self.use_cases.kpis.require(db, request.path_params["name"], request.path_params["kpi"])
            self.use_cases.kpis.delete(db, kpi.use_case_name, kpi.name)
        return JSONResponse(kpi.wire(_rid()))

    # instances and scores --------------------------------------------------------------

    def _instance(self, db: Any, request: Request) -> dict[str, Any]:
        name, use_case_id = request.path_params["name"], request.path_params["id"]
        self.use_cases.require(db, name)
        found = self.use_cases.instance(db, name, use_case_id)
        if found is None:
            raise errors.PayiError(404, INSTANCE_NOT_FOUND, f"use case {name!r} has no instance {use_case_id!r}")
        return found

    async def new_instance(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            self.use_cases.require(db, request.path_params["name"])
            instance = self.use_cases.new_instance(db, request.path_params["name"])
        return JSONResponse(instance)

    async def get_instance(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            return JSONResponse(self._instance(db, request))

    async def delete_instance(self, request: Request) -> JSONResponse:
        with self.store.transaction() as db:
            instance = self._instance(db, request)
            self.use_cases.delete_instance(db, instance["use_case_name"], instance["use_case_id"])
        return JSONResponse(instance)

    async def instance_properties(self, request: Request) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(spec.PROPERTIES_REQUEST, body)
        with self.store.transaction() as db:
            instance = self._instance(db, request)
            self.use_cases.set_instance_properties(
                db, instance["use_case_name"], instance["use_case_id"], body["properties"]
            )
        return JSONResponse(instance)

    async def instance_kpis(self, request: Request) -> JSONResponse:
        name, use_case_id = request.path_params["name"], request.path_params["id"]
        wanted = request.query_params.get("kpi_name")
        with self.store.transaction() as db:
            self.use_cases.require(db, name)
            items = [
                {key: value for key, value in item.items() if key != "use_case_id"}
                for item in self.use_cases.kpis.scores(db, name, use_case_id)
                if wanted is None or item["kpi_name"] == wanted
            ]
        return JSONResponse({"request_id": _rid(), "cursor": None, "items": items})

    async def score(self, request: Request) -> Response:
        """``{"score": …}``: the spec's ``oneOf [boolean, integer, number]`` overlaps for whole numbers, so
        the sandbox checks the value itself (a number or a boolean) instead of refusing ``1``."""
        body = spec.parse_json(await request.body())
        if not isinstance(body, dict) or set(body) - {"score"}:
            raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, 'body must be {"score": <number or boolean>}')
        with self.store.transaction() as db:
            self.use_cases.require(db, request.path_params["name"])
            kpi = self.use_cases.kpis.require(db, request.path_params["name"], request.path_params["kpi"])
            self.use_cases.kpis.score(db, kpi, request.path_params["id"], body.get("score"))
        return Response(status_code=200)

    async def value(self, request: Request) -> JSONResponse:
        """Value metrics are configured only in Pay-i's UI; the sandbox has none, so both are null."""
        with self.store.transaction() as db:
            self._instance(db, request)
        return JSONResponse({"money": None, "time": None})
