"""UsageEvent → IngestRequest body + headers and → BulkIngestRequest item, held to the published spec."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from payi_notebook import wire
from payi_notebook.context import Context, derive
from payi_notebook.events import UsageEvent
from payi_notebook.units import anthropic_units

from support.events import openai_event
from support.openapi_spec import validate_component

SECRETS = ("sk-provider-secret", "sk-ant-secret", "payi-key-secret")


def _context(**overrides: object) -> Context:
    options: dict[str, object] = dict(
        use_case_name="summarize",
        use_case_version=3,
        use_case_step="draft",
        user_id="ana",
        account_name="acme",
        limit_ids=["team-q4", "ana-daily"],
        properties={"team": "search", "run": 7},
        use_case_properties={"ticket": "T-1"},
    )
    options.update(overrides)
    return derive(Context(), **options)  # type: ignore[arg-type]


def _openai_event(**overrides: object) -> UsageEvent:
    fields: dict[str, object] = dict(
        provider_response_id="chatcmpl-abc123",
        timestamp=1_767_225_600.25,  # 2026-01-01T00:00:00.250Z
        latency_ms=812.6,
        ttft_ms=143.2,
        context=_context(),
        provider_uri="https://api.openai.com/v1",
        request_json=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        response_json=json.dumps({"id": "chatcmpl-abc123", "choices": []}),
        response_headers=[
            {"name": "x-request-id", "value": "req_1"},
            {"name": "openai-processing-ms", "value": "700"},
            {"name": "content-type", "value": "application/json"},
            {"name": "Content-Length", "value": "512"},
            {"name": "transfer-encoding", "value": "chunked"},
            {"name": "set-cookie", "value": "__cf_bm=sk-provider-secret"},
            {"name": "Authorization", "value": "Bearer sk-provider-secret"},
        ],
    )
    fields.update(overrides)
    return openai_event(1200, 340, cached=200, reasoning=40, **fields)


def test_full_openai_event_renders_to_a_valid_ingest_request() -> None:
    event = _openai_event()
    body = wire.ingest_body(event)
    validate_component("IngestRequest", body)
    assert body == {
        "category": "system.openai",
        "resource": "gpt-4o-mini",
        "units": {"text": {"input": 1000, "output": 300}, "text_cache_read": {"input": 200}, "reasoning": {"output": 40}},
        "event_timestamp": "2026-01-01T00:00:00.250Z",
        "provider_response_id": "chatcmpl-abc123",
        "end_to_end_latency_ms": 813,
        "time_to_first_token_ms": 143,
        "http_status_code": 200,
        "provider_uri": "https://api.openai.com/v1",
        "provider_request_json": event.request_json,
        "provider_response_json": event.response_json,
        "provider_response_headers": [
            {"name": "x-request-id", "value": "req_1"},
            {"name": "openai-processing-ms", "value": "700"},
        ],
        "properties": {"team": "search", "run": "7"},
        "use_case_properties": {"ticket": "T-1"},
    }


def test_headers_carry_the_context_and_never_a_key() -> None:
    event = _openai_event()
    headers = wire.ingest_headers(event)
    assert headers == {
        "xProxy-Limit-IDs": "team-q4,ana-daily",
        "xProxy-UseCase-Name": "summarize",
        "xProxy-UseCase-ID": event.context.use_case_id,
        "xProxy-UseCase-Step": "draft",
        "xProxy-User-ID": "ana",
        "xProxy-Account-Name": "acme",
        "xProxy-UseCase-Version": "3",
    }
    assert not any("api-key" in name.lower() for name in headers)


def test_timestamp_is_iso_utc_from_the_event_time() -> None:
    event = _openai_event(timestamp=1_700_000_000.0)
    stamp = wire.ingest_body(event)["event_timestamp"]
    assert stamp == "2023-11-14T22:13:20.000Z"
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == datetime.fromtimestamp(1_700_000_000, UTC)


@pytest.mark.parametrize(
    ("context_choice", "default", "logged"),
    [(None, True, True), (None, False, False), (False, True, False), (True, False, True), (False, False, False)],
)
def test_prompt_and_response_only_when_logging_is_on(context_choice: bool | None, default: bool, logged: bool) -> None:
    event = _openai_event(context=_context(log_prompt_and_response=context_choice))
    body = wire.ingest_body(event, default)
    headers = wire.ingest_headers(event, default)
    validate_component("IngestRequest", body)
    assert ("provider_request_json" in body) is logged
    assert ("provider_response_json" in body) is logged
    assert ("xProxy-Logging-Disable" in headers) is not logged
    if not logged:
        assert headers["xProxy-Logging-Disable"] == "True"
        assert "hi" not in json.dumps(body)


def test_streamed_response_json_may_be_a_list_of_chunks() -> None:
    chunks = [json.dumps({"id": "chatcmpl-s", "choices": [{"delta": {"content": c}}]}) for c in ("a", "b")]
    body = wire.ingest_body(_openai_event(streaming=True, response_json=chunks))
    validate_component("IngestRequest", body)
    assert body["provider_response_json"] == chunks


def test_failed_provider_call_is_still_an_event() -> None:
    event = _openai_event(
        provider_response_id="req_err_9",
        units={},
        http_status=429,
        latency_ms=35.0,
        ttft_ms=None,
        response_json=json.dumps({"error": {"type": "rate_limit_exceeded"}}),
        response_headers=None,
    )
    body = wire.ingest_body(event)
    validate_component("IngestRequest", body)
    assert body["units"] == {"text": {"input": 0, "output": 0}}
    assert body["http_status_code"] == 429
    assert "time_to_first_token_ms" not in body
    assert "provider_response_headers" not in body


def test_missing_response_id_gets_a_stable_generated_one() -> None:
    event = _openai_event(provider_response_id=None)
    first, second = wire.ingest_body(event), wire.ingest_body(event)
    assert first["provider_response_id"] == second["provider_response_id"] == f"payi_{event.event_id}"
    assert wire.response_id(event) == f"payi_{event.event_id}"


def test_nulls_are_left_out() -> None:
    event = UsageEvent(provider="anthropic", category="system.anthropic", operation="messages")
    body = wire.ingest_body(event)
    validate_component("IngestRequest", body)
    assert set(body) == {"category", "resource", "units", "event_timestamp", "provider_response_id"}
    assert body["resource"] == wire.UNKNOWN_RESOURCE
    assert None not in body.values()
    assert wire.ingest_headers(event) == {}


def test_anthropic_cache_units_and_large_latencies_fit_the_spec() -> None:
    usage = {
        "input_tokens": 40,
        "output_tokens": 900,
        "cache_read_input_tokens": 5000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 300},
    }
    event = UsageEvent(
        provider="anthropic",
        category="system.anthropic",
        operation="messages",
        resource="claude-sonnet-4-5",
        provider_response_id="msg_01",
        units=anthropic_units(usage),
        latency_ms=1e12,
        context=_context(use_case_name=""),
    )
    body = wire.ingest_body(event)
    validate_component("IngestRequest", body)
    assert body["end_to_end_latency_ms"] == wire.INT32_MAX
    assert body["units"]["text_cache_write_1h"] == {"input": 300}
    assert "use_case_properties" not in body  # no use case, nothing to attach them to


def _bulk_item(event: UsageEvent) -> dict[str, object]:
    """The bulk item the sender makes: the spooled ingest body and headers, merged."""
    return wire.bulk_item_from(wire.ingest_body(event), wire.ingest_headers(event))


def test_bulk_item_is_the_body_plus_the_context_fields() -> None:
    event = _openai_event()
    item = _bulk_item(event)
    validate_component("BulkIngestRequest", item)
    body = wire.ingest_body(event)
    assert {k: v for k, v in item.items() if k in body} == body
    assert {k: v for k, v in item.items() if k not in body} == {
        "limit_ids": ["team-q4", "ana-daily"],
        "use_case_name": "summarize",
        "use_case_id": event.context.use_case_id,
        "use_case_version": 3,
        "use_case_step": "draft",
        "user_id": "ana",
        "account_name": "acme",
    }


def test_bulk_items_without_attribution_are_just_the_body() -> None:
    for event in (_openai_event(context=Context()), _openai_event(context=_context(limit_ids=[]))):
        item = _bulk_item(event)
        validate_component("BulkIngestRequest", item)
        assert "limit_ids" not in item
    bare = _openai_event(context=Context())
    assert _bulk_item(bare) == wire.ingest_body(bare)


def test_credentials_never_reach_the_wire() -> None:
    event = _openai_event()
    rendered = json.dumps([wire.ingest_body(event), wire.ingest_headers(event), _bulk_item(event)])
    for secret in SECRETS:
        assert secret not in rendered
    names = {h["name"].lower() for h in wire.ingest_body(event)["provider_response_headers"]}
    assert not names & {"authorization", "set-cookie", "content-type", "content-length", "transfer-encoding"}
