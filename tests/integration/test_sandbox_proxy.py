"""The proxy routes driven by the real openai/anthropic SDKs over loopback, against the emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from payi_notebook.pricing import price_units
from payi_notebook.sandbox import Sandbox
from payi_notebook.units import units_for

from support.openapi_spec import validate_component, validate_response
from support.sandbox_api import Api

CHAT = "/api/v1/proxy/openai/v1/chat/completions"
MESSAGES = "/api/v1/proxy/anthropic/v1/messages"
PROMPT = [{"role": "user", "content": "Write two sentences about budgets."}]


def _openai(sb: Sandbox, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{sb.base_url}/api/v1/proxy/openai/v1",
        api_key="sk-test",
        default_headers={"xProxy-api-key": sb.api_key, **headers},
        max_retries=0,
    )


def _anthropic(sb: Sandbox, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{sb.base_url}/api/v1/proxy/anthropic",
        api_key="sk-ant-test",
        default_headers={"xProxy-api-key": sb.api_key, **headers},
        max_retries=0,
    )


def _check_result(result: dict[str, Any], provider: str, category: str, model: str, usage: dict[str, Any]) -> None:
    """``xproxy_result`` fits the spec and its cost is exactly what ``price_units`` says for the usage."""
    validate_component("ProxyResult", result)
    price = price_units(category, model, units_for(provider, usage))
    assert price.total > 0
    assert result["cost"]["currency"] == "usd"
    assert result["cost"]["input"]["base"] == pytest.approx(price.input)
    assert result["cost"]["output"]["base"] == pytest.approx(price.output)
    assert result["cost"]["total"]["base"] == pytest.approx(price.total)


def _stored(api: Api, request_id: str) -> dict[str, Any]:
    (event,) = [event for event in api.events() if event["request_id"] == request_id]
    return event


def _emulator_total(sb: Sandbox) -> int:
    return sb.emulator.state.requests.total


def test_openai_chat_json(sandbox: Sandbox, api: Api) -> None:
    reply = _openai(sandbox).chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    result = reply.model_extra["xproxy_result"]
    usage = reply.usage.model_dump()
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    _check_result(result, "openai", "system.openai", "gpt-4o-mini", usage)
    event = _stored(api, result["request_id"])
    assert event["source"] == "proxy" and event["provider_response_id"] == reply.id
    assert event["units"] == units_for("openai", usage)
    assert event["http_status_code"] == 200
    lookup = api.call(
        "GET",
        "/api/v1/requests/provider/{category}/{provider_response_id}/result",
        {"category": "system.openai", "provider_response_id": reply.id},
    )
    assert lookup.json()["xproxy_result"] == result


def test_openai_chat_stream_puts_the_result_in_the_usage_chunk(sandbox: Sandbox, api: Api) -> None:
    chunks = list(_openai(sandbox).chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))
    assert sandbox.emulator.state.requests.last.body["stream_options"]["include_usage"] is True
    usage_chunk = chunks[-1]
    assert usage_chunk.usage is not None and usage_chunk.choices == []
    assert all("xproxy_result" not in (chunk.model_extra or {}) for chunk in chunks[:-1])
    result = usage_chunk.model_extra["xproxy_result"]
    _check_result(result, "openai", "system.openai", "gpt-4o-mini", usage_chunk.usage.model_dump())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1] if chunk.choices)
    assert text
    event = _stored(api, result["request_id"])
    assert event["provider_response_id"] == chunks[0].id and event["details"]["streaming"] is True


def test_openai_chat_stream_raw_wire_order(sandbox: Sandbox) -> None:
    """On the wire: xproxy_result is in the last data event, then ``[DONE]``; nothing is lost."""
    headers = {"xProxy-api-key": sandbox.api_key, "Authorization": "Bearer sk"}
    body = {"model": "gpt-4o-mini", "messages": PROMPT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", sandbox.base_url + CHAT, headers=headers, json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "x-request-id" in response.headers
        datas = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(data) for data in datas[:-1]]
    assert "xproxy_result" in chunks[-1]
    assert all("xproxy_result" not in chunk for chunk in chunks[:-1])
    deltas = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["delta"].get("content")]
    assert chunks[-1]["usage"]["completion_tokens"] == len(deltas)  # the emulator streams one token per delta


def test_openai_async_json_and_stream(sandbox: Sandbox) -> None:
    async def run() -> tuple[Any, list[Any]]:
        client = openai.AsyncOpenAI(
            base_url=f"{sandbox.base_url}/api/v1/proxy/openai/v1",
            api_key="sk-test",
            default_headers={"xProxy-api-key": sandbox.api_key},
        )
        reply = await client.chat.completions.create(model="gpt-4o", messages=PROMPT)
        stream = await client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
        chunks = [chunk async for chunk in stream]
        await client.close()
        return reply, chunks

    reply, chunks = asyncio.run(run())
    _check_result(reply.model_extra["xproxy_result"], "openai", "system.openai", "gpt-4o", reply.usage.model_dump())
    last = chunks[-1]
    _check_result(last.model_extra["xproxy_result"], "openai", "system.openai", "gpt-4o", last.usage.model_dump())


def test_openai_responses_json_and_stream(sandbox: Sandbox, api: Api) -> None:
    client = _openai(sandbox)
    reply = client.responses.create(model="gpt-4o-mini", input="Summarize the budget.")
    _check_result(
        reply.model_extra["xproxy_result"], "openai", "system.openai", "gpt-4o-mini", reply.usage.model_dump()
    )
    events = list(client.responses.create(model="o4-mini", input="Think about the budget.", stream=True))
    completed = [event for event in events if "xproxy_result" in (event.model_extra or {})]
    assert [event.type for event in completed] == ["response.completed"] and events[-1] is completed[0]
    usage = completed[0].response.usage
    assert usage.output_tokens_details.reasoning_tokens > 0
    result = completed[0].model_extra["xproxy_result"]
    _check_result(result, "openai", "system.openai", "o4-mini", usage.model_dump())
    assert (
        _stored(api, result["request_id"])["units"]["reasoning"]["output"]
        == usage.output_tokens_details.reasoning_tokens
    )


def test_openai_embeddings(sandbox: Sandbox, api: Api) -> None:
    reply = _openai(sandbox).embeddings.create(model="text-embedding-3-small", input=["budget", "limits"])
    assert len(reply.data) == 2
    result = reply.model_extra["xproxy_result"]
    _check_result(result, "openai", "system.openai", "text-embedding-3-small", reply.usage.model_dump())
    event = _stored(api, result["request_id"])
    assert event["units"] == {"text": {"input": reply.usage.prompt_tokens, "output": 0}}
    assert event["provider_response_id"] is None


def test_anthropic_messages_json_and_stream(sandbox: Sandbox, api: Api) -> None:
    client = _anthropic(sandbox)
    model = "claude-3-5-haiku-latest"
    message = client.messages.create(model=model, max_tokens=200, messages=PROMPT)
    _check_result(
        message.model_extra["xproxy_result"], "anthropic", "system.anthropic", model, message.usage.model_dump()
    )
    events = list(client.messages.create(model=model, max_tokens=200, messages=PROMPT, stream=True))
    assert events[-1].type == "message_stop"
    result = events[-1].model_extra["xproxy_result"]
    start = next(event for event in events if event.type == "message_start")
    delta = next(event for event in events if event.type == "message_delta")
    usage = {**start.message.usage.model_dump(), "output_tokens": delta.usage.output_tokens}
    _check_result(result, "anthropic", "system.anthropic", model, usage)
    event = _stored(api, result["request_id"])
    assert event["provider_response_id"] == start.message.id
    assert event["units"]["text"] == {"input": usage["input_tokens"], "output": delta.usage.output_tokens}


def test_anthropic_async_stream_helper(sandbox: Sandbox) -> None:
    async def run() -> Any:
        client = anthropic.AsyncAnthropic(
            base_url=f"{sandbox.base_url}/api/v1/proxy/anthropic",
            api_key="sk-ant-test",
            default_headers={"xProxy-api-key": sandbox.api_key},
        )
        async with client.messages.stream(model="claude-haiku-4-5", max_tokens=300, messages=PROMPT) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        await client.close()
        return text, final

    text, final = asyncio.run(run())
    assert text and final.usage.output_tokens > 0


def test_forwarding_strips_xproxy_headers_and_unwraps_forward_ones(sandbox: Sandbox) -> None:
    client = _openai(
        sandbox,
        **{"xProxy-Forward-X-Team-Trace": "abc123", "xProxy-User-ID": "ana", "xProxy-UseCase-Name": "fwd"},
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    seen = sandbox.emulator.state.requests.last.headers
    assert seen["x-team-trace"] == "abc123"
    assert not [name for name in seen if name.startswith("xproxy")]
    assert sandbox.emulator.state.requests.last.status == 200


def test_request_properties_header_is_decoded_and_stored(sandbox: Sandbox, api: Api) -> None:
    encoded = base64.b64encode(json.dumps({"team": "search", "n": 3}).encode()).decode()
    reply = _openai(sandbox, **{"xProxy-Request-Properties": encoded}).chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT
    )
    event = _stored(api, reply.model_extra["xproxy_result"]["request_id"])
    assert event["context"]["properties"] == {"team": "search", "n": "3"}


def test_allow_limit_counts_proxied_calls(sandbox: Sandbox, api: Api) -> None:
    limit_id = api.create_limit(max=100.0)
    reply = _openai(sandbox, **{"xProxy-Limit-IDs": limit_id}).chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT
    )
    result = reply.model_extra["xproxy_result"]
    assert result["limits"] == {limit_id: {"state": "ok"}}
    totals = api.limit(limit_id)["totals"]
    assert totals["requests"]["ok"] == 1 and totals["cost"]["total"]["base"] == pytest.approx(
        result["cost"]["total"]["base"]
    )


def test_block_limit_refuses_the_next_call_without_calling_the_provider(sandbox: Sandbox, api: Api) -> None:
    block = api.create_limit(max=1e-7, limit_type="block")
    allow = api.create_limit(max=100.0)
    client = _openai(sandbox, **{"xProxy-Limit-IDs": f"{block},{allow}", "xProxy-UseCase-Name": "guarded"})
    first = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert first.model_extra["xproxy_result"]["limits"] == {block: {"state": "overrun"}, allow: {"state": "ok"}}
    calls = _emulator_total(sandbox)
    spend = api.limit(block)["totals"]["cost"]["total"]["base"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert _emulator_total(sandbox) == calls
    body = refused.value.response.json()
    validate_response(CHAT, "post", 400, body)
    assert body["statusCode"] == 400 and body["xproxy_error"]["code"] == "limit_reached"
    result = body["xproxy_result"]
    assert result["limits"] == {block: {"state": "blocked"}, allow: {"state": "blocked_external"}}
    assert result["blocked_limit_ids"] == [block]
    assert "cost" not in result and result["use_case_name"] == "guarded"
    assert api.limit(block)["totals"]["cost"]["total"]["base"] == spend
    assert api.limit(block)["totals"]["requests"]["blocked"] == 1
    assert api.limit(allow)["totals"]["requests"]["blocked_external"] == 1
    stored = _stored(api, result["request_id"])
    assert stored["blocked_limit_ids"] == [block] and stored["cost"]["total"] == 0 and stored["http_status_code"] == 400

    streaming = _anthropic(sandbox, **{"xProxy-Limit-IDs": block})
    with pytest.raises(anthropic.BadRequestError):
        list(streaming.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=PROMPT, stream=True))
    assert _emulator_total(sandbox) == calls
    api.call("POST", "/api/v1/limits/{limit_id}/reset", {"limit_id": block})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT).model_extra["xproxy_result"]["limits"][
        block
    ]


def test_exceeded_block_limit_still_forwards(sandbox: Sandbox, api: Api) -> None:
    client = _openai(sandbox)
    probe = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    cost = probe.model_extra["xproxy_result"]["cost"]["total"]["base"]
    block = api.create_limit(max=cost * 1.5, limit_type="block", threshold=0.75)
    limited = _openai(sandbox, **{"xProxy-Limit-IDs": block})
    states = [
        limited.chat.completions.create(model="gpt-4o-mini", messages=PROMPT).model_extra["xproxy_result"]["limits"][
            block
        ]["state"]
        for _ in range(2)
    ]
    assert states == ["ok", "overrun"]
    with pytest.raises(openai.BadRequestError):
        limited.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)


def test_provider_errors_pass_through_with_payi_fields(sandbox: Sandbox, api: Api) -> None:
    limit_id = api.create_limit(max=10.0)
    client = _openai(sandbox, **{"X-Emulator-Fault": "429,retry=7", "xProxy-Limit-IDs": limit_id})
    before = api.last_seq()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    response = raised.value.response
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    body = response.json()
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["xproxy_error"]["code"] == "provider_error"
    validate_component("ProxyResult", body["xproxy_result"])
    assert body["xproxy_result"]["limits"] == {limit_id: {"state": "failed"}}
    (event,) = api.events(after=before)
    assert event["http_status_code"] == 429 and event["cost"]["total"] == 0
    assert api.limit(limit_id)["totals"]["requests"]["failed"] == 1

    with pytest.raises(anthropic.InternalServerError) as overloaded:
        _anthropic(sandbox, **{"X-Emulator-Fault": "529"}).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=20, messages=PROMPT
        )
    assert overloaded.value.response.json()["error"]["type"] == "overloaded_error"


def test_unreachable_provider_is_a_502_provider_error(sandbox: Sandbox, api: Api) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    before = api.last_seq()
    client = _openai(sandbox, **{"xProxy-Provider-BaseUri": f"http://127.0.0.1:{closed_port}"})
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    body = raised.value.response.json()
    assert raised.value.response.status_code == 502
    validate_component("ApiError", body)
    assert body["xproxy_error"]["code"] == "provider_error"
    assert api.last_seq() == before


def test_provider_base_uri_routes_the_call(sandbox: Sandbox) -> None:
    calls = _emulator_total(sandbox)
    client = _openai(sandbox, **{"xProxy-Provider-BaseUri": sandbox.provider_url})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT).model_extra["xproxy_result"]
    assert _emulator_total(sandbox) == calls + 1


def test_cut_stream_is_recorded_with_usage_seen_so_far(sandbox: Sandbox, api: Api) -> None:
    before = api.last_seq()
    client = _anthropic(sandbox, **{"X-Emulator-Fault": "cut=4"})
    with pytest.raises(Exception) as raised:  # noqa: B017 - which transport error depends on the SDK version
        list(client.messages.create(model="claude-3-5-haiku-latest", max_tokens=200, messages=PROMPT, stream=True))
    assert type(raised.value).__name__ in {"RemoteProtocolError", "APIConnectionError"}
    (event,) = api.events(after=before)
    assert event["details"]["stream_cut"] is True
    assert event["units"]["text"]["input"] > 0
    assert event["cost"]["total"] == pytest.approx(
        price_units("system.anthropic", "claude-3-5-haiku-latest", event["units"]).total
    )
    assert event["provider_response_id"].startswith("msg_")


def test_client_that_leaves_mid_stream_is_recorded(sandbox: Sandbox, api: Api) -> None:
    before = api.last_seq()
    headers = {"xProxy-api-key": sandbox.api_key, "Authorization": "Bearer sk", "X-Emulator-Fault": "interval=0.05"}
    body = {"model": "gpt-4o-mini", "messages": PROMPT, "stream": True}
    with httpx.stream("POST", sandbox.base_url + CHAT, headers=headers, json=body) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    deadline = time.monotonic() + 5
    while not api.events(after=before) and time.monotonic() < deadline:
        time.sleep(0.02)
    (event,) = api.events(after=before)
    assert event["details"]["stream_cut"] is True and event["provider_response_id"].startswith("chatcmpl-")


@pytest.mark.parametrize(
    ("headers", "content", "code"),
    [
        ({"xProxy-UseCase-Version": "v2"}, b'{"model": "gpt-4o-mini", "messages": []}', "request_processing_error"),
        ({}, b'{"model": ', "invalid_json"),
        ({"xProxy-Limit-IDs": "missing-limit"}, b'{"model": "gpt-4o-mini", "messages": []}', "invalid_limit_ids"),
        (
            {"xProxy-Provider-BaseUri": "api.openai.com"},
            b'{"model": "gpt-4o-mini", "messages": []}',
            "invalid_provider_uri",
        ),
        ({"xProxy-UseCase-Name": "bad name!"}, b'{"model": "gpt-4o-mini", "messages": []}', "invalid_use_case_name"),
        ({"Authorization": None}, b'{"model": "gpt-4o-mini", "messages": []}', "header_is_missing"),
    ],
)
def test_proxy_refuses_bad_requests_before_forwarding(
    sandbox: Sandbox, api: Api, headers: dict[str, str | None], content: bytes, code: str
) -> None:
    sent = {
        "xProxy-api-key": sandbox.api_key,
        "Authorization": "Bearer sk",
        "content-type": "application/json",
        **headers,
    }
    calls, before = _emulator_total(sandbox), api.last_seq()
    response = httpx.post(
        sandbox.base_url + CHAT, headers={k: v for k, v in sent.items() if v is not None}, content=content
    )
    assert response.status_code == 400
    validate_response(CHAT, "post", 400, response.json())
    assert response.json()["xproxy_error"]["code"] == code
    assert _emulator_total(sandbox) == calls and api.last_seq() == before


def test_proxy_fault_injection(sandbox: Sandbox, api: Api) -> None:
    sandbox.inject_fault(route="proxy", status=503, count=1, retry_after=1)
    calls, before = _emulator_total(sandbox), api.last_seq()
    with pytest.raises(openai.InternalServerError) as raised:
        _openai(sandbox).chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert raised.value.response.status_code == 503 and raised.value.response.headers["retry-after"] == "1"
    assert _emulator_total(sandbox) == calls and api.last_seq() == before
    assert _openai(sandbox).chat.completions.create(model="gpt-4o-mini", messages=PROMPT).model_extra["xproxy_result"]


def test_unpriced_model_through_the_proxy_reports_unknown_units(sandbox: Sandbox) -> None:
    reply = _openai(sandbox).chat.completions.create(model="my-finetune-x", messages=PROMPT)
    result = reply.model_extra["xproxy_result"]
    validate_component("ProxyResult", result)
    assert result["unknown_units"] == units_for("openai", reply.usage.model_dump())
    assert result["cost"]["total"]["base"] == 0 and result["warnings"]


def test_no_credentials_leak_into_events(sandbox: Sandbox, api: Api) -> None:
    _openai(sandbox).chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    dump = json.dumps(api.events())
    assert "sk-test" not in dump and "sk-ant-test" not in dump and sandbox.api_key not in dump
