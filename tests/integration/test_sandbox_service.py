"""The sandbox's Pay-i REST surface over real loopback HTTP: auth, ingest, bulk, results, faults."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from payi_notebook.pricing import price_units

from support.openapi_spec import validate_component, validate_response
from support.sandbox_api import Api, openai_event

INGEST = "/api/v1/ingest"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/ingest"),
        ("POST", "/api/v1/ingest/bulk"),
        ("GET", "/api/v1/limits"),
        ("POST", "/api/v1/limits"),
        ("GET", "/api/v1/requests/x/result"),
        ("POST", "/api/v1/proxy/openai/v1/chat/completions"),
        ("POST", "/api/v1/proxy/anthropic/v1/messages"),
        ("GET", "/sandbox/v1/events"),
        ("POST", "/sandbox/v1/faults"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_every_route_needs_the_api_key(api: Api, method: str, path: str, key: str | None) -> None:
    before = api.last_seq()
    headers = {} if key is None else {"xProxy-api-key": key}
    response = httpx.request(method, api.sandbox.base_url + path, headers=headers, json=openai_event())
    assert response.status_code == 401
    body = response.json()
    validate_component("ApiError", body)
    assert body["xproxy_error"]["code"] == "invalid_api_key"
    assert ("missing" if key is None else "invalid") in body["message"]
    assert api.sandbox.api_key not in response.text
    assert api.last_seq() == before


def test_api_key_header_name_is_case_insensitive(api: Api) -> None:
    response = httpx.post(
        api.sandbox.base_url + INGEST, headers={"XPROXY-API-KEY": api.sandbox.api_key}, json=openai_event()
    )
    assert response.status_code == 200, response.text


def test_ingest_prices_units_and_echoes_context(api: Api) -> None:
    body = openai_event(units={"text": {"input": 1000, "output": 200}, "text_cache_read": {"input": 500}})
    headers = {
        "xProxy-UseCase-Name": "summarize.v2",
        "xProxy-UseCase-Step": "draft",
        "xProxy-UseCase-Version": "3",
        "xProxy-User-ID": "ana",
        "xProxy-Account-Name": "acme",
        "xProxy-Resource-Scope": "global",
        "xProxy-Instrumented-Module": "payi_notebook/0.1",
    }
    response = api.ingest(body, headers=headers, params={"id": body["provider_response_id"]})
    assert response.status_code == 200, response.text
    answer = response.json()
    result = answer["xproxy_result"]
    price = price_units("system.openai", "gpt-4o-mini", body["units"])
    assert price.total > 0
    assert result["cost"] == {
        "currency": "usd",
        "input": {"base": pytest.approx(price.input)},
        "output": {"base": pytest.approx(price.output)},
        "total": {"base": pytest.approx(price.total)},
    }
    assert result["request_id"] == answer["request_id"]
    assert result["use_case_name"] == "summarize.v2" and result["use_case_step"] == "draft"
    assert result["user_id"] == "ana" and result["account_name"] == "acme"
    assert result["use_case_id"]
    assert "unknown_units" not in result and "duplicate_request" not in result
    stored = api.events()[-1]
    assert stored["request_id"] == answer["request_id"]
    assert stored["source"] == "ingest"
    assert stored["provider_response_id"] == body["provider_response_id"]
    assert stored["units"] == body["units"]
    assert stored["cost"]["total"] == pytest.approx(price.total)
    assert stored["context"]["use_case_version"] == 3
    assert stored["context"]["resource_scope"] == "global"


def test_event_timestamp_is_kept_and_echoed(api: Api) -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    response = api.ingest(openai_event(event_timestamp=_iso(when)))
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["event_timestamp"].replace("Z", "+00:00")) == when


def test_unpriceable_model_reports_unknown_units_with_a_warning(api: Api) -> None:
    units = {"text": {"input": 10, "output": 5}}
    response = api.ingest(openai_event(resource="no-such-model-xyz", units=units))
    assert response.status_code == 200
    result = response.json()["xproxy_result"]
    assert result["unknown_units"] == units
    assert result["cost"]["total"]["base"] == 0
    assert any("no-such-model-xyz" in warning for warning in result["warnings"])


def test_duplicate_is_acknowledged_and_counted_once(api: Api) -> None:
    limit_id = api.create_limit(max=10.0)
    body = openai_event()
    first = api.ingest(body, headers={"xProxy-Limit-IDs": limit_id})
    before = api.last_seq()
    again = api.ingest(body, headers={"xProxy-Limit-IDs": limit_id}, params={"id": body["provider_response_id"]})
    assert again.status_code == 200
    assert again.json()["request_id"] == first.json()["request_id"]
    assert again.json()["xproxy_result"]["duplicate_request"] is True
    assert again.json()["xproxy_result"]["cost"] == first.json()["xproxy_result"]["cost"]
    assert api.last_seq() == before
    limit = api.limit(limit_id)
    assert limit["totals"]["requests"]["total"] == 1
    assert limit["totals"]["cost"]["total"]["base"] == pytest.approx(
        first.json()["xproxy_result"]["cost"]["total"]["base"]
    )
    other_category = api.ingest({**body, "category": "system.anthropic", "resource": "claude-3-5-haiku-latest"})
    assert "duplicate_request" not in other_category.json()["xproxy_result"]


def test_events_without_provider_response_id_are_never_duplicates(api: Api) -> None:
    body = openai_event()
    del body["provider_response_id"]
    first, second = api.ingest(body), api.ingest(body)
    assert first.json()["request_id"] != second.json()["request_id"]
    assert "duplicate_request" not in second.json()["xproxy_result"]


FUTURE = _iso(datetime.now(UTC) + timedelta(days=1))  # far ahead: the suite may run long after collection


@pytest.mark.parametrize(
    ("body", "headers", "code", "names"),
    [
        (
            openai_event(units={"text": {"input": -1}}),
            {},
            "request_processing_error",
            "units.text.input: -1 is less than the minimum of 0",
        ),
        (openai_event(colour="blue"), {}, "request_processing_error", "colour: unknown field"),
        (openai_event(units={"text": {"input": 1, "tokens": 2}}), {}, "request_processing_error", "units.text.tokens"),
        (
            openai_event(units={"text": {"input": "12"}}),
            {},
            "request_processing_error",
            "units.text.input: '12' is not of type 'integer'",
        ),
        (openai_event(units={"text": {"input": 2**31}}), {}, "request_processing_error", "units.text.input"),
        (openai_event(end_to_end_latency_ms=1.5), {}, "request_processing_error", "end_to_end_latency_ms"),
        ({"units": {}}, {}, "required_field_missing", "category: required field is missing"),
        ({"category": "system.openai"}, {}, "required_field_missing", "units: required field is missing"),
        (openai_event(category=""), {}, "request_processing_error", "category"),
        (openai_event(event_timestamp="2024-01-01T00:00:00"), {}, "request_processing_error", "event_timestamp"),
        (openai_event(event_timestamp=FUTURE), {}, "invalid_ingest_event_timestamp", "event_timestamp"),
        (openai_event(), {"xProxy-UseCase-Version": "two"}, "request_processing_error", "xProxy-UseCase-Version"),
        (openai_event(), {"xProxy-UseCase-Name": "has space"}, "invalid_use_case_name", "has space"),
        (openai_event(), {"xProxy-UseCase-Name": "x" * 65}, "invalid_use_case_name", "1-64"),
        (openai_event(), {"xProxy-Limit-IDs": "no-such-limit"}, "invalid_limit_ids", "no-such-limit"),
        (openai_event(), {"xProxy-Logging-Disable": "yes"}, "request_processing_error", "xProxy-Logging-Disable"),
        (["not", "an", "object"], {}, "request_processing_error", "body"),
    ],
)
def test_strict_validation_refuses_and_stores_nothing(
    api: Api, body: object, headers: dict[str, str], code: str, names: str
) -> None:
    before = api.last_seq()
    response = api.ingest(body, headers=headers)
    assert response.status_code == 400
    answer = response.json()
    assert answer["xproxy_error"]["code"] == code
    assert names in answer["message"]
    assert api.last_seq() == before


def test_malformed_json_is_refused(api: Api) -> None:
    before = api.last_seq()
    response = api.call(
        "POST",
        INGEST,
        content=b'{"category": "system.openai", "units": {',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["xproxy_error"]["code"] == "invalid_json"
    assert "not valid JSON" in response.json()["message"]
    assert api.last_seq() == before


def test_a_timestamp_slightly_ahead_is_accepted(api: Api) -> None:
    soon = _iso(datetime.now(UTC) + timedelta(minutes=4))
    assert api.ingest(openai_event(event_timestamp=soon)).status_code == 200


def test_limit_id_rules_on_ingest(api: Api) -> None:
    allow = api.create_limit(max=1.0)
    block = api.create_limit(max=1.0, limit_type="block")
    before = api.last_seq()
    twice = api.ingest(openai_event(), headers={"xProxy-Limit-IDs": f"{allow}, {allow}"})
    assert twice.status_code == 400 and twice.json()["xproxy_error"]["code"] == "duplicate_limit_id"
    blocking = api.ingest(openai_event(), headers={"xProxy-Limit-IDs": f"{allow},{block}"})
    assert blocking.status_code == 400 and blocking.json()["xproxy_error"]["code"] == "blocking_limit_not_allowed"
    assert block in blocking.json()["message"]
    assert api.last_seq() == before
    assert api.limit(allow)["totals"]["requests"]["total"] == 0


def test_logging_disable_keeps_cost_but_drops_payloads(api: Api) -> None:
    body = openai_event(
        provider_request_json='{"messages": []}',
        provider_request_headers=[
            {"name": "Authorization", "value": "Bearer sk-secret"},
            {"name": "x-trace", "value": "1"},
        ],
    )
    quiet = api.ingest(body, headers={"xProxy-Logging-Disable": "True"})
    assert quiet.json()["xproxy_result"]["cost"]["total"]["base"] > 0
    stored = api.events()[-1]
    assert "provider_request_json" not in stored["details"] and "provider_request_headers" not in stored["details"]
    loud = api.ingest({**body, "provider_response_id": "loud-" + body["provider_response_id"]})
    assert loud.status_code == 200
    stored = api.events()[-1]
    assert stored["details"]["provider_request_json"] == '{"messages": []}'
    assert {"name": "Authorization", "value": "<redacted>"} in stored["details"]["provider_request_headers"]
    assert "sk-secret" not in str(api.events())


def test_bulk_stores_valid_items_and_reports_the_others(api: Api) -> None:
    limit_id = api.create_limit(max=5.0)
    good = openai_event(limit_ids=[limit_id], user_id="bo", use_case_name="batch", scope="global", use_case_version=2)
    bad_units = openai_event(units={"text": {"output": -5}})
    blocked = api.create_limit(max=5.0, limit_type="block")
    before = api.last_seq()
    response = api.bulk([good, bad_units, openai_event(limit_ids=[blocked]), {"category": "system.openai"}])
    assert response.status_code == 400
    answer = response.json()
    assert answer["ingest_count"] == 1
    assert answer["total_count"] == 4
    assert answer["error_count"] == answer["item_error_count"] == 3
    by_index = {error["item_index"]: error["xproxy_result"] for error in answer["errors"]}
    assert set(by_index) == {1, 2, 3}
    assert "units.text.output" in by_index[1]["message"]
    assert by_index[2]["xproxy_error"]["code"] == "blocking_limit_not_allowed"
    assert by_index[3]["xproxy_error"]["code"] == "required_field_missing"
    stored = api.events(after=before)
    assert [event["provider_response_id"] for event in stored] == [good["provider_response_id"]]
    assert stored[0]["source"] == "bulk"
    assert stored[0]["context"]["user_id"] == "bo" and stored[0]["context"]["use_case_version"] == 2
    assert api.limit(limit_id)["totals"]["requests"]["total"] == 1


def test_bulk_all_valid_is_200_and_duplicates_count_once(api: Api) -> None:
    item = openai_event()
    before = api.last_seq()
    response = api.bulk([item, openai_event(), item])
    assert response.status_code == 200
    assert response.json()["ingest_count"] == 3 and response.json()["errors"] == []
    assert len(api.events(after=before)) == 2


@pytest.mark.parametrize("content", [b"[{", b'{"category": "system.openai"}', b""])
def test_bulk_refuses_a_body_that_is_not_an_array(api: Api, content: bytes) -> None:
    before = api.last_seq()
    response = api.call("POST", "/api/v1/ingest/bulk", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    answer = response.json()
    assert answer["ingest_count"] == 0 and answer["error_count"] == 1 and answer["item_error_count"] == 0
    assert "item_index" not in answer["errors"][0]
    assert api.last_seq() == before


def test_results_by_request_id_and_by_provider_response_id(api: Api) -> None:
    body = openai_event()
    ingested = api.ingest(body).json()
    by_id = api.call("GET", "/api/v1/requests/{request_id}/result", {"request_id": ingested["request_id"]})
    assert by_id.status_code == 200 and by_id.json()["xproxy_result"] == ingested["xproxy_result"]
    template = "/api/v1/requests/provider/{category}/{provider_response_id}/result"
    by_provider = api.call(
        "GET", template, {"category": "system.openai", "provider_response_id": body["provider_response_id"]}
    )
    assert by_provider.json()["xproxy_result"] == ingested["xproxy_result"]
    missing = api.call(
        "GET", template, {"category": "system.anthropic", "provider_response_id": body["provider_response_id"]}
    )
    assert missing.status_code == 404
    assert body["provider_response_id"] in missing.json()["message"]
    unknown = api.call("GET", "/api/v1/requests/{request_id}/result", {"request_id": "nope"})
    assert unknown.status_code == 404


def test_injected_faults_fail_the_next_matching_requests_without_storing(api: Api) -> None:
    added = api.http.post("/sandbox/v1/faults", json={"route": "ingest", "status": 429, "count": 2, "retry_after": 3})
    assert added.status_code == 200 and added.json()["faults"][0]["count"] == 2
    before = api.last_seq()
    assert api.call("GET", "/api/v1/limits").status_code == 200
    for _ in range(2):
        refused = api.http.post(INGEST, json=openai_event())
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"
        validate_component("ApiError", refused.json())
        assert refused.json()["xproxy_error"]["code"] == "too_many_requests"
    assert api.last_seq() == before
    assert api.ingest(openai_event()).status_code == 200

    api.sandbox.inject_fault(route="*", status=503, count=5)
    assert api.http.post("/api/v1/ingest/bulk", json=[openai_event()]).status_code == 503
    assert api.http.get("/api/v1/limits").status_code == 503
    assert api.http.get("/sandbox/v1/faults").json()["faults"] == [{"route": "*", "status": 503, "count": 3}]
    assert api.http.delete("/sandbox/v1/faults").json() == {"cleared": 1}
    assert api.ingest(openai_event()).status_code == 200


@pytest.mark.parametrize(
    "fault",
    [
        {"route": "everything", "status": 500},
        {"status": 200},
        {"status": 500, "count": 0},
        {"status": 500, "retry_after": -1},
        {"status": 500, "when": 1},
    ],
)
def test_bad_fault_requests_are_refused(api: Api, fault: dict[str, object]) -> None:
    response = api.http.post("/sandbox/v1/faults", json=fault)
    assert response.status_code == 400
    assert api.http.get("/sandbox/v1/faults").json()["faults"] == []


def test_events_lists_what_reached_the_sandbox(api: Api) -> None:
    before = api.last_seq()
    body = openai_event()
    answer = api.ingest(body, headers={"xProxy-Request-Tags": "a,b-c"}).json()
    assert answer["xproxy_result"]["request_tags"] == ["a", "b-c"]
    (event,) = api.events(after=before)
    assert set(event) >= {
        "seq",
        "request_id",
        "source",
        "category",
        "resource",
        "provider_response_id",
        "units",
        "cost",
        "unknown_units",
        "limit_ids",
        "limit_states",
        "http_status_code",
        "event_timestamp",
        "ingest_timestamp",
        "context",
        "xproxy_result",
    }
    assert event["xproxy_result"] == answer["xproxy_result"]
    assert api.sandbox.events(after=before) == [event]
    assert api.http.get("/sandbox/v1/events", params={"after": "x"}).status_code == 400


def test_unknown_routes_answer_in_payi_shape(api: Api) -> None:
    response = api.http.get("/api/v1/nothing-here")
    assert response.status_code == 404
    validate_component("ApiError", response.json())


def test_ingest_takes_properties_from_the_body(api: Api) -> None:
    """Ingest takes properties in the body; the header form is a proxy-only thing."""
    encoded = base64.b64encode(b'{"k":"v"}').decode()
    response = api.ingest(openai_event(properties={"team": "search"}), headers={"xProxy-Request-Properties": encoded})
    assert response.status_code == 200
    assert api.events()[-1]["context"]["properties"] == {"team": "search"}


def test_ingest_response_schema_is_enforced_by_the_helper() -> None:
    with pytest.raises(AssertionError, match="is a required property"):
        validate_response(INGEST, "post", 200, {"ingest_timestamp": "2024-01-01T00:00:00Z"})
    with pytest.raises(AssertionError, match="date-time"):
        validate_component(
            "IngestResponse",
            {
                "request_id": "r",
                "ingest_timestamp": "yesterday",
                "event_timestamp": "2024-01-01T00:00:00Z",
                "xproxy_result": {},
            },
        )
