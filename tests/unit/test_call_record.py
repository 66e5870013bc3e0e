"""``CallRecord``: capture hands over finished calls whose event is built on first use, and a
journalled raw record replays into the same event without capture's live state.

Real SDK calls (openai) through the real capture hooks, answered in memory by an httpx2
transport; the sink is a list, so no session or sandbox is involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import pytest
from openai import OpenAI

from payi_notebook import records, tracking
from payi_notebook.capture import CaptureConfig, RouteTable, hooks
from payi_notebook.context import Context
from payi_notebook.records import CallRecord

CHAT = {
    "id": "chatcmpl-unit",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23},
}
STREAM = (
    b'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":'
    b'[{"index":0,"delta":{"content":"ok"}}]}\n\n'
    b'data: {"id":"chatcmpl-s","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n'
    b"data: [DONE]\n\n"
)


def answer(request: httpx2.Request) -> httpx2.Response:
    if b'"stream":true' in request.content.replace(b" ", b""):
        chunks = iter(STREAM.split(b"\n\n")[:-1])  # arrives event by event, not yet read (as over a socket)
        return httpx2.Response(200, content=(chunk + b"\n\n" for chunk in chunks), headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=orjson.dumps(CHAT), headers={"content-type": "application/json", "x-request-id": "r1"})


@pytest.fixture
def captured() -> Iterator[list[CallRecord]]:
    calls: list[CallRecord] = []
    problems: list[str] = []
    saved = hooks._config
    hooks.install()
    hooks.configure(CaptureConfig(routes=RouteTable(), sink=lambda call, scope: calls.append(call),
                                  report=lambda what, exc: problems.append(what)))  # fmt: skip
    try:
        yield calls
    finally:
        hooks.configure(saved)
    assert problems == []


def chat(log: bool | None = None, **request: Any) -> Any:
    client = OpenAI(base_url="https://api.openai.com/v1", api_key="sk-unit", http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))
    token = tracking.enter(tracking.TrackingScope(context=Context(use_case_name="unit", log_prompt_and_response=log)))
    try:
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], **request)
    finally:
        tracking.leave(token)


def test_a_plain_json_call_is_handed_over_unbuilt_and_built_once_on_demand(captured: list[CallRecord]) -> None:
    chat()
    (call,) = captured
    assert isinstance(call, CallRecord) and call.lazy
    assert call.obs.usage is None  # type: ignore[attr-defined]  # nothing was read on the request path
    event = call.event()
    assert (event.resource, event.tokens.input, event.tokens.output) == ("gpt-4o-mini", 21, 2)
    assert event.provider_response_id == "chatcmpl-unit" and event.context.use_case_name == "unit"
    assert call.event() is event  # built once


def test_streams_and_unlogged_telemetry_calls_are_built_at_hand_over(captured: list[CallRecord]) -> None:
    for _ in chat(stream=True):
        pass
    chat(log=False)  # its prompt must not reach the journal, so its raw record is never written
    stream, unlogged = captured
    assert not stream.lazy and not unlogged.lazy
    assert stream.event().tokens.output == 1 and unlogged.event().tokens.input == 21


def test_a_journalled_record_replays_into_the_same_event(captured: list[CallRecord]) -> None:
    chat()
    (call,) = captured
    record = orjson.loads(orjson.dumps(call.journal()))  # as the journal stores it
    assert "sk-unit" not in str(record)
    replayed = records.replay(call.event_id, record)  # delivery's way in: no Exchange, no capture import
    live = call.event()
    for field in ("event_id", "provider", "category", "operation", "resource", "units", "provider_response_id",
                  "http_status", "status", "request_json", "response_json", "timestamp"):  # fmt: skip
        assert getattr(replayed, field) == getattr(live, field), field
    assert replayed.context.use_case_name == "unit"
    assert replayed.latency_ms == pytest.approx(live.latency_ms)
    assert [h["name"] for h in replayed.response_headers or []] == [h["name"] for h in live.response_headers or []]
