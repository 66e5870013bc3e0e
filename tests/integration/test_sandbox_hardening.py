"""The sandbox refuses what it cannot handle with a 4xx naming the field (issue 8, item 20):
a body past the documented size cap (413), JSON nested too deep, ``?after=`` and cursors past
SQLite's range (400), and limit ids that could never be addressed in a URL path."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import payi_notebook as pn
from payi_notebook.client import PayiClient
from payi_notebook.sandbox.service import MAX_BODY_BYTES
from payi_notebook.sandbox.spec import MAX_DEPTH

from support.openapi_spec import validate_response
from support.sandbox_api import Api, openai_event

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def http(sandbox: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, headers={"xProxy-api-key": sandbox.api_key}, timeout=60) as client:
        yield client


def _refusal(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["statusCode"] == status and body["xproxy_error"]["code"]
    return body["xproxy_error"]["message"]


def test_a_body_past_the_cap_is_refused_with_413_before_it_is_stored(http: httpx.Client, api: Api) -> None:
    before = api.last_seq()
    big = json.dumps(openai_event(properties={"blob": "x" * (MAX_BODY_BYTES + 10)})).encode()
    message = _refusal(http.post("/api/v1/ingest", content=big, headers={"content-type": "application/json"}), 413)
    assert f"{MAX_BODY_BYTES} byte cap" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies as the bytes arrive
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    message = _refusal(http.post("/api/v1/ingest", content=chunks(), headers={"content-type": "application/json"}), 413)
    assert "byte cap" in message
    assert api.last_seq() == before, "nothing of a refused body is stored"
    small = api.ingest(openai_event())
    assert small.status_code == 200


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 200_000])
def test_deeply_nested_json_is_a_400_naming_the_field(http: httpx.Client, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = '{"category": "system.openai", "units": {"text": {"input": 1, "output": 1}}, "properties": ' + nested + "}"
    message = _refusal(http.post("/api/v1/ingest", content=body.encode()), 400)
    assert message.startswith("properties") and f"more than {MAX_DEPTH} levels" in message
    validate_response("/api/v1/ingest", "post", 400, http.post("/api/v1/ingest", content=body.encode()).json())


@pytest.mark.parametrize("after", ["99999999999999999999", "9" * 5000, "²", "-1"])
def test_events_after_out_of_range_is_a_400_naming_after(http: httpx.Client, after: str) -> None:
    message = _refusal(http.get("/sandbox/v1/events", params={"after": after}), 400)
    assert message.startswith("after:")


def test_a_cursor_past_the_range_is_a_400_naming_cursor(http: httpx.Client) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps({"after": 10**30}).encode()).decode()
    response = http.get("/api/v1/limits", params={"cursor": cursor})
    assert _refusal(response, 400).startswith("cursor:")
    validate_response("/api/v1/limits", "get", 400, response.json())


@pytest.mark.parametrize("limit_id", ["team/q4", "a b", "a,b", "..", "q4?x", "%2F", "x" * 300])
def test_limit_ids_that_cannot_be_addressed_are_refused_at_create(
    http: httpx.Client, sandbox_env: Any, limit_id: str
) -> None:
    response = http.post("/api/v1/limits", json={"limit_name": f"n-{limit_id[:20]}", "max": 1, "limit_id": limit_id})
    assert _refusal(response, 400).startswith("limit_id:")
    validate_response("/api/v1/limits", "post", 400, response.json())
    with PayiClient(sandbox_env.base_url, sandbox_env.api_key) as client:  # refused before anything is sent
        with pytest.raises(ValueError, match="limit id"):
            client.create_limit("n", 1.0, limit_id=limit_id)
    with pytest.raises(pn.LimitError, match="limit id"):
        pn.limits.create("n", 1.0, limit_id=limit_id)


def test_an_addressable_limit_id_round_trips(api: Api) -> None:
    limit_id = "team-q4.2026_v~1"
    response = api.call("POST", "/api/v1/limits", json={"limit_name": limit_id, "max": 1, "limit_id": limit_id})
    assert response.status_code in (200, 201)
    assert api.limit(limit_id)["limit_id"] == limit_id
    assert api.call("DELETE", "/api/v1/limits/{limit_id}", {"limit_id": limit_id}).status_code == 200
