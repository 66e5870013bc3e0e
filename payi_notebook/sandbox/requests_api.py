"""Request properties after the fact, and saved reports as CSV.

``PUT /requests/{request_id}/properties`` and ``PUT /requests/provider/{category}/
{provider_response_id}/properties`` merge the given properties into the stored event's
(``None`` removes a key; Pay-i does not document merge semantics, this is the sandbox's
choice). ``GET /reports/{report_id}?from&to`` answers CSV for the sandbox's built-in reports
(Pay-i's are saved Query-Builder queries): ``from`` inclusive, ``to`` exclusive, on the event time.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import errors, spec
from .store import Store
from .use_cases import UseCases

REQUEST_COLUMNS = (
    "request_id",
    "event_timestamp",
    "category",
    "resource",
    "provider_response_id",
    "use_case_name",
    "use_case_id",
    "use_case_version",
    "use_case_step",
    "user_id",
    "account_name",
    "input_cost",
    "output_cost",
    "total_cost",
    "properties",
)
KPI_COLUMNS = ("use_case_name", "use_case_id", "kpi_name", "kpi_type", "score", "create_timestamp", "update_timestamp")


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR,
            f"{name}: {text!r} must be an ISO 8601 date-time with a UTC offset, e.g. 2026-01-01T00:00:00Z",
        )
    return moment


def _csv(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv")


def _request_row(event: dict[str, Any]) -> dict[str, Any]:
    context = event.get("context") or {}
    cost = event.get("cost") or {}
    props = context.get("properties")
    return {
        "request_id": event["request_id"],
        "event_timestamp": event["event_timestamp"],
        "category": event["category"],
        "resource": event.get("resource"),
        "provider_response_id": event.get("provider_response_id"),
        **{key: context.get(key) for key in REQUEST_COLUMNS[5:11]},
        "input_cost": cost.get("input"),
        "output_cost": cost.get("output"),
        "total_cost": cost.get("total"),
        "properties": json.dumps(props, sort_keys=True) if props else "",
    }


class RequestsApi:
    """Properties PUTs on stored events and the report route."""

    def __init__(self, store: Store, use_cases: UseCases) -> None:
        self.store = store
        self.use_cases = use_cases
        self.reports: dict[str, Callable[[datetime | None, datetime | None], Response]] = {
            "requests": self._requests_report,
            "kpi_scores": self._kpi_report,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/requests/{request_id}/properties", self.properties, methods=["PUT"]),
            Route(
                "/api/v1/requests/provider/{category}/{provider_response_id}/properties",
                self.provider_properties,
                methods=["PUT"],
            ),
            Route("/api/v1/reports/{report_id}", self.report, methods=["GET"]),
        ]

    async def properties(self, request: Request) -> JSONResponse:
        request_id = request.path_params["request_id"]
        return await self._update(request, "request_id = ?", (request_id,), f"request {request_id!r}")

    async def provider_properties(self, request: Request) -> JSONResponse:
        category, pid = request.path_params["category"], request.path_params["provider_response_id"]
        where = "category = ? AND provider_response_id = ?"
        return await self._update(
            request, where, (category, pid), f"provider response {pid!r} in category {category!r}"
        )

    async def _update(self, request: Request, where: str, args: tuple[str, ...], what: str) -> JSONResponse:
        body = spec.parse_json(await request.body())
        spec.validate_body(spec.PROPERTIES_REQUEST, body)
        with self.store.transaction() as db:
            row = db.execute(f"SELECT seq, record FROM events WHERE {where}", args).fetchone()
            if row is None:
                raise errors.PayiError(404, errors.REQUEST_NOT_FOUND, f"{what} not found")
            record = json.loads(row[1])
            context = record.setdefault("context", {})
            merged = {**(context.get("properties") or {}), **body["properties"]}
            context["properties"] = {key: value for key, value in merged.items() if value is not None}
            db.execute(
                "UPDATE events SET record = ? WHERE seq = ?", (json.dumps(record, separators=(",", ":")), row[0])
            )
        return JSONResponse({"request_id": str(uuid.uuid4())})

    async def report(self, request: Request) -> Response:
        report_id = request.path_params["report_id"]
        start = _moment("from", request.query_params.get("from"))
        end = _moment("to", request.query_params.get("to"))
        make = self.reports.get(report_id)
        if make is None:
            known = ", ".join(sorted(self.reports))
            raise errors.PayiError(
                404, errors.NOT_FOUND, f"report {report_id!r} not found; the sandbox's reports are: {known}"
            )
        return make(start, end)

    def _requests_report(self, start: datetime | None, end: datetime | None) -> Response:
        """One row per stored request with its attribution and Pay-i cost."""
        rows = []
        for event in self.store.events():
            if event.get("blocked_limit_ids"):
                continue
            moment = datetime.fromisoformat(event["event_timestamp"].replace("Z", "+00:00"))
            if (start is None or moment >= start) and (end is None or moment < end):
                rows.append(_request_row(event))
        return _csv(REQUEST_COLUMNS, rows)

    def _kpi_report(self, start: datetime | None, end: datetime | None) -> Response:
        """One row per KPI score of a use case instance, by when it was first scored."""
        rows = []
        for item in self.use_cases.kpis.all_scores():
            moment = datetime.fromisoformat(item["create_timestamp"].replace("Z", "+00:00"))
            if (start is None or moment >= start) and (end is None or moment < end):
                rows.append(item)
        return _csv(KPI_COLUMNS, rows)
