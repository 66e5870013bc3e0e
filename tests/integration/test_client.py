"""PayiClient / AsyncPayiClient against the real sandbox over loopback: answers, errors, validation."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

import payi_notebook.sandbox as sandbox_pkg
from payi_notebook import wire
from payi_notebook.client import USER_AGENT, AsyncPayiClient, PayiClient, PayiError, PayiUnavailable, parse_retry_after
from payi_notebook.context import Context, derive
from payi_notebook.events import UsageEvent

from support.events import openai_event
from support.openapi_spec import validate_component

KEY = "payi-test-key-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def sandbox() -> Iterator[sandbox_pkg.Sandbox]:
    with sandbox_pkg.start(api_key=KEY) as running:
        yield running


@pytest.fixture
def client(sandbox: sandbox_pkg.Sandbox) -> Iterator[PayiClient]:
    with PayiClient(sandbox.base_url, sandbox.api_key, timeout=10) as payi:
        yield payi


def _event(limit_ids: list[str] | None = None, **overrides: object) -> UsageEvent:
    context = derive(Context(), use_case_name="client-test", user_id="ana", limit_ids=limit_ids)
    return openai_event(1200, 300, context=context, **overrides)


def _bulk_item(event: UsageEvent) -> dict[str, object]:
    """The bulk item the sender makes from a spooled event."""
    return wire.bulk_item_from(wire.ingest_body(event), wire.ingest_headers(event))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ingest_returns_payis_result_and_sends_our_identity(client: PayiClient, sandbox: sandbox_pkg.Sandbox) -> None:
    limit_id = f"lim-{uuid.uuid4().hex[:8]}"
    client.create_limit(limit_id, 50.0, limit_id=limit_id)
    event = _event([limit_id])
    answer = client.ingest(wire.ingest_body(event), wire.ingest_headers(event))
    validate_component("IngestResponse", answer)
    result = answer["xproxy_result"]
    assert result["cost"]["total"]["base"] > 0
    assert result["limits"] == {limit_id: {"state": "ok"}}
    stored = [e for e in sandbox.events() if e["provider_response_id"] == event.provider_response_id]
    assert len(stored) == 1 and stored[0]["request_id"] == answer["request_id"]
    assert stored[0]["context"]["user_id"] == "ana"
    assert USER_AGENT.startswith("payi_notebook/")


def test_resending_the_same_response_id_is_a_duplicate(client: PayiClient, sandbox: sandbox_pkg.Sandbox) -> None:
    event = _event()
    first = client.ingest(wire.ingest_body(event), wire.ingest_headers(event))
    again = client.ingest(wire.ingest_body(event), wire.ingest_headers(event))
    assert again["xproxy_result"]["duplicate_request"] is True
    assert again["request_id"] == first["request_id"]
    assert sum(e["provider_response_id"] == event.provider_response_id for e in sandbox.events()) == 1


def test_refusal_carries_payis_code_and_message(client: PayiClient) -> None:
    event = _event([f"no-such-limit-{uuid.uuid4().hex[:6]}"])
    with pytest.raises(PayiError) as caught:
        client.ingest(wire.ingest_body(event), wire.ingest_headers(event))
    err = caught.value
    assert err.status == 400 and err.code == "invalid_limit_ids"
    assert err.message and not err.retryable
    assert "invalid_limit_ids" in str(err) and "400" in str(err)


def test_wrong_key_is_401_and_no_key_shows_anywhere(sandbox: sandbox_pkg.Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-key-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    with PayiClient(sandbox.base_url, wrong) as payi:
        with pytest.raises(PayiError) as caught:
            payi.list_limits()
        texts = [repr(payi), str(payi), repr(caught.value), str(caught.value), repr(vars(payi)), caplog.text]
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    assert not caught.value.retryable
    for text in texts:
        assert wrong not in text and KEY not in text


def test_unreachable_is_retryable_and_names_no_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with PayiClient(f"http://127.0.0.1:{_free_port()}", KEY, timeout=2) as payi:
        with pytest.raises(PayiUnavailable) as caught:
            payi.get_limit("x")
    assert caught.value.retryable and caught.value.status is None
    assert "ConnectError" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value) and KEY not in caplog.text


@pytest.mark.parametrize(("status", "retry_after"), [(429, 2.0), (503, None), (500, None)])
def test_injected_faults_are_retryable_with_retry_after(
    client: PayiClient, sandbox: sandbox_pkg.Sandbox, status: int, retry_after: float | None
) -> None:
    sandbox.inject_fault(route="ingest", status=status, count=1, retry_after=retry_after)
    event = _event()
    with pytest.raises(PayiError) as caught:
        client.ingest(wire.ingest_body(event), wire.ingest_headers(event))
    assert caught.value.status == status and caught.value.retryable
    assert caught.value.retry_after == retry_after
    client.ingest(wire.ingest_body(event), wire.ingest_headers(event))  # the fault is used up


def test_limit_lifecycle(client: PayiClient) -> None:
    name = f"budget-{uuid.uuid4().hex[:8]}"
    created = client.create_limit(name, 10.0, limit_type="block", threshold=0.8, properties={"team": "search"})
    validate_component("LimitResponse", created)
    limit = created["limit"]
    assert (limit["limit_name"], limit["max"], limit["limit_type"], limit["threshold"]) == (name, 10.0, "block", 0.8)
    limit_id = limit["limit_id"]

    assert client.get_limit(limit_id)["limit"]["limit_id"] == limit_id
    updated = client.update_limit(limit_id, max=25.0, name=name + "-x")["limit"]
    assert (updated["max"], updated["limit_name"]) == (25.0, name + "-x")
    assert [lim["limit_id"] for lim in client.list_limits(name=name + "-x")] == [limit_id]
    validate_component("LimitHistoryResponse", client.reset_limit(limit_id))
    client.delete_limit(limit_id)
    with pytest.raises(PayiError) as caught:
        client.get_limit(limit_id)
    assert caught.value.code == "limit_not_found"


def test_list_limits_follows_the_cursor(client: PayiClient) -> None:
    ids = {client.create_limit(f"page-{uuid.uuid4().hex[:8]}", 1.0)["limit"]["limit_id"] for _ in range(5)}
    every = client.list_limits(page_size=2)
    listed = [lim["limit_id"] for lim in every]
    assert ids <= set(listed)
    assert len(listed) == len(set(listed))
    for lim in every:
        validate_component("Limit", lim)


def test_results_by_request_id_and_by_provider_response_id(client: PayiClient) -> None:
    event = _event()
    answer = client.ingest(wire.ingest_body(event), wire.ingest_headers(event))
    by_request = client.request_result(answer["request_id"])
    by_provider = client.provider_result(event.category, event.provider_response_id)  # type: ignore[arg-type]
    validate_component("RequestResultResponse", by_request)
    assert by_request["xproxy_result"]["request_id"] == by_provider["xproxy_result"]["request_id"] == answer["request_id"]
    with pytest.raises(PayiError) as caught:
        client.provider_result(event.category, "chatcmpl-never-sent/with slash")
    assert caught.value.status == 404


def test_bulk_answer_is_returned_even_when_some_items_are_refused(client: PayiClient, sandbox: sandbox_pkg.Sandbox) -> None:
    good, bad = _event(), _event([f"missing-{uuid.uuid4().hex[:6]}"])
    answer = client.ingest_bulk([_bulk_item(good), _bulk_item(bad)])
    validate_component("BulkIngestResponse", answer)
    assert answer["ingest_count"] == 1
    assert [e["item_index"] for e in answer["errors"]] == [1]
    assert answer["errors"][0]["xproxy_result"]["xproxy_error"]["code"] == "invalid_limit_ids"
    ids = [e["provider_response_id"] for e in sandbox.events()]
    assert good.provider_response_id in ids and bad.provider_response_id not in ids


def test_async_client_speaks_the_same_api(sandbox: sandbox_pkg.Sandbox) -> None:
    """The flusher's client: ingest, bulk and result lookups, concurrently."""

    async def run() -> tuple[list[dict], dict, dict]:
        async with AsyncPayiClient(sandbox.base_url, sandbox.api_key) as payi:
            events = [_event(), _event()]
            answers = await asyncio.gather(*(payi.ingest(wire.ingest_body(e), wire.ingest_headers(e)) for e in events))
            bulk = await payi.ingest_bulk([_bulk_item(_event())])
            looked_up = await payi.provider_result(events[0].category, events[0].provider_response_id)
            return answers, bulk, looked_up

    answers, bulk, looked_up = asyncio.run(run())
    for answer in answers:
        validate_component("IngestResponse", answer)
    validate_component("BulkIngestResponse", bulk)
    assert bulk["ingest_count"] == 1
    assert looked_up["xproxy_result"]["request_id"] == answers[0]["request_id"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.create_limit("x", -1), "max must be above 0 USD"),
        (lambda c: c.create_limit("x", float("nan")), "max must be an amount in USD"),
        (lambda c: c.create_limit("x", True), "max must be an amount in USD"),
        (lambda c: c.create_limit("x", 5, limit_type="hard"), "limit type must be 'allow' or 'block'"),
        (lambda c: c.create_limit("x", 5, threshold=1.5), "threshold must be a fraction"),
        (lambda c: c.create_limit("", 5), "limit name must be a non-empty string"),
        (lambda c: c.create_limit("x", 5, limit_id="a,b"), "limit id 'a,b' is invalid"),
        (lambda c: c.update_limit("id"), "update_limit needs max=... or name=..."),
        (lambda c: c.update_limit("id", max=-3), "max must be above 0 USD"),
        (lambda c: c.get_limit(""), "limit_id must be a non-empty string"),
        (lambda c: c.provider_result("system.openai", ""), "provider_response_id must be a non-empty string"),
        (lambda c: c.ingest({"units": {}}), "needs at least 'category' and 'units'"),
        (lambda c: c.ingest_bulk([]), "non-empty list"),
        (lambda c: c.list_limits(page_size=0), "page_size must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused_before_sending(call, message: str, sandbox: sandbox_pkg.Sandbox) -> None:  # type: ignore[no-untyped-def]
    before = len(sandbox.events())
    with PayiClient(sandbox.base_url, sandbox.api_key) as payi:
        with pytest.raises(ValueError, match=message) as caught:
            call(payi)
    assert "\n" not in str(caught.value)
    assert len(sandbox.events()) == before


@pytest.mark.parametrize(("base_url", "key"), [("api.pay-i.com", "k"), ("https://", "k"), ("https://api.pay-i.com", " ")])
def test_bad_endpoint_settings_are_refused(base_url: str, key: str) -> None:
    with pytest.raises(ValueError):
        PayiClient(base_url, key)


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
