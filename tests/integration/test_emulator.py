"""The provider emulator, driven by the real openai and anthropic SDKs over loopback HTTP.

Expected token counts are recomputed here from the documented rule (README.md), not taken
from the emulator's own code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic import Anthropic, AsyncAnthropic
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion
from starlette.applications import Starlette

from payi_notebook.sandbox.emulator import create_app
from payi_notebook.sandbox.server import ServerThread, bind, url_of

TOKEN = re.compile(r"\w{1,8}|[^\w\s]")
CLAUDE = "claude-haiku-4-5"


def toks(text: str) -> int:
    return len(TOKEN.findall(text))


def prompt_tokens(*contents: str, tools: list[dict[str, Any]] | None = None) -> int:
    """4 per message plus its content, 3 to prime the reply, tool definitions as compact JSON."""
    tool_tokens = sum(toks(json.dumps(tool, sort_keys=True, separators=(",", ":"))) for tool in tools or [])
    return tool_tokens + sum(4 + toks(content) for content in contents) + 3


def unique(text: str = "") -> str:
    """A prompt no other test sends, so the shared prompt cache cannot leak between tests."""
    return f"Case {uuid.uuid4().hex[:8]}: {text}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[Starlette, str]]:
    app = create_app()
    sock = bind("127.0.0.1", 0)
    server = ServerThread([(app, sock)], name="emulator-test")
    server.start()
    yield app, url_of(sock)
    server.stop()


@pytest.fixture(scope="module")
def app(emulator: tuple[Starlette, str]) -> Starlette:
    return emulator[0]


@pytest.fixture(scope="module")
def url(emulator: tuple[Starlette, str]) -> str:
    return emulator[1]


@pytest.fixture(scope="module")
def oai(url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{url}/v1", api_key="test-key", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude(url: str) -> Iterator[Anthropic]:
    with Anthropic(base_url=url, api_key="test-key", max_retries=0) as client:
        yield client


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- OpenAI chat -----------------------------------------------------------------------------


def test_chat_usage_follows_the_documented_tokenizer(oai: OpenAI) -> None:
    system, question = "You are terse, precise; and kind.", unique("What's 2+2? Answer, please!")
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": system}, *user(question)]
    )
    completion = raw.parse()
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == prompt_tokens(system, question)
    text = completion.choices[0].message.content or ""
    assert usage.completion_tokens == toks(text) >= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", completion.id)
    assert raw.headers["x-request-id"].startswith("req_")


def test_chat_is_deterministic_but_ids_are_unique(oai: OpenAI) -> None:
    messages = user(unique("Tell me something."))
    first = oai.chat.completions.create(model="gpt-4o", messages=messages)
    second = oai.chat.completions.create(model="gpt-4o", messages=messages)
    other_model = oai.chat.completions.create(model="gpt-4.1", messages=messages)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage
    assert first.id != second.id
    assert other_model.choices[0].message.content != first.choices[0].message.content


def test_chat_counts_tools_names_and_images(oai: OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    text = unique("Describe this picture.")
    completion = oai.chat.completions.create(
        model="gpt-4o",
        tools=[tool],  # type: ignore[list-item]
        messages=[
            {
                "role": "user",
                "name": "ana",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            }
        ],
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt_tokens(text, tools=[tool]) + toks("ana") + 85


def test_chat_cap_reports_length(oai: OpenAI) -> None:
    messages = user(unique("Write a long essay."))
    cap_args: list[Any] = [{"max_completion_tokens": 5}, {"max_tokens": 5}]
    for cap_arg in cap_args:
        completion = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, **cap_arg)
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None and completion.usage.completion_tokens == 5
        assert toks(completion.choices[0].message.content or "") == 5


def test_chat_several_choices(oai: OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=user(unique("Options?")), n=2)
    texts = [choice.message.content or "" for choice in completion.choices]
    assert [choice.index for choice in completion.choices] == [0, 1] and texts[0] != texts[1]
    assert completion.usage is not None and completion.usage.completion_tokens == toks(texts[0]) + toks(texts[1])


def test_chat_reasoning_tokens_grow_with_effort(oai: OpenAI) -> None:
    messages = user(unique("Prove it."))
    by_effort = {}
    for effort in ("low", "high"):
        completion = oai.chat.completions.create(model="o3-mini", messages=messages, reasoning_effort=effort)
        usage = completion.usage
        assert usage is not None
        reasoning = usage.completion_tokens_details.reasoning_tokens
        assert reasoning > 0 and reasoning % 64 == 0
        assert usage.completion_tokens == reasoning + toks(completion.choices[0].message.content or "")
        by_effort[effort] = reasoning
    assert by_effort["low"] <= 256 < 512 <= by_effort["high"]
    capped = oai.chat.completions.create(model="gpt-5-mini", messages=messages, max_completion_tokens=40)
    assert capped.choices[0].finish_reason == "length" and capped.choices[0].message.content == ""
    assert capped.usage is not None and capped.usage.completion_tokens == 40
    assert capped.usage.completion_tokens_details.reasoning_tokens == 40
    plain = oai.chat.completions.create(model="gpt-5-chat-latest", messages=messages)
    assert plain.usage is not None and plain.usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_stream_with_usage_matches_json(oai: OpenAI, app: Starlette) -> None:
    messages = user(unique("Stream to me."))
    reference = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert app.state.requests.last.body["stream_options"] == {"include_usage": True}
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [chunk.choices[0].delta.content for chunk in chunks[1:-2]]
    assert all(toks(delta or "") == 1 for delta in deltas)
    assert "".join(d or "" for d in deltas) == reference.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == reference.usage
    assert len({chunk.id for chunk in chunks}) == 1


def test_chat_stream_without_include_usage_has_no_usage(oai: OpenAI) -> None:
    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=user(unique("No usage.")), stream=True)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_chat_stream_helper_and_async_client(url: str) -> None:
    messages = user(unique("Async, please."))

    async def run() -> tuple[str, str, Any]:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
            reference = await client.chat.completions.create(model="gpt-4o", messages=messages)
            async with client.chat.completions.stream(
                model="gpt-4o", messages=messages, stream_options={"include_usage": True}
            ) as stream:
                final = await stream.get_final_completion()
            return reference.choices[0].message.content or "", final.choices[0].message.content or "", final.usage

    reference_text, streamed_text, usage = asyncio.run(run())
    assert streamed_text == reference_text
    assert usage.completion_tokens == toks(reference_text)


# --- OpenAI prompt caching -------------------------------------------------------------------


def test_openai_prompt_cache_reports_128_token_prefixes(oai: OpenAI) -> None:
    long_text = unique(" ".join(f"fact{i}" for i in range(1300)))
    total = prompt_tokens(long_text)
    messages = user(long_text)
    first = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    second = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == total
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == 1024 + 128 * ((total - 1024) // 128)
    longer = oai.chat.completions.create(model="gpt-4o-mini", messages=[*messages, *user("And then?")])
    shared = total - 2  # the follow-up diverges at the role after the first message's <start>
    assert longer.usage is not None
    assert longer.usage.prompt_tokens_details.cached_tokens == 1024 + 128 * ((shared - 1024) // 128)
    responses = oai.responses.create(model="gpt-4o-mini", input=long_text)
    assert responses.usage is not None
    assert responses.usage.input_tokens_details.cached_tokens == second.usage.prompt_tokens_details.cached_tokens
    other_model = oai.chat.completions.create(model="gpt-4o", messages=messages)
    assert other_model.usage is not None and other_model.usage.prompt_tokens_details.cached_tokens == 0


def test_short_prompts_are_never_cached(oai: OpenAI) -> None:
    messages = user(unique("short"))
    oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    again = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert again.usage is not None and again.usage.prompt_tokens_details.cached_tokens == 0


# --- OpenAI Responses ------------------------------------------------------------------------


def test_responses_json(oai: OpenAI) -> None:
    instructions, question = "Be brief.", unique("Summarise the plan.")
    raw = oai.responses.with_raw_response.create(model="gpt-4.1-mini", instructions=instructions, input=question)
    response = raw.parse()
    assert re.fullmatch(r"resp_[0-9a-f]{48}", response.id) and raw.headers["x-request-id"]
    assert response.status == "completed" and response.model == "gpt-4.1-mini"
    assert response.instructions == instructions
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == prompt_tokens(instructions, question)
    assert usage.output_tokens == toks(response.output_text)
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert [item.type for item in response.output] == ["message"]


def test_responses_input_items_and_reasoning(oai: OpenAI) -> None:
    first_text = unique("Hi there.")
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": first_text}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Go on."},
    ]
    response = oai.responses.create(model="o4-mini", input=items, reasoning={"effort": "minimal"})
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == prompt_tokens(first_text, "Hello!", "Go on.")
    reasoning = usage.output_tokens_details.reasoning_tokens
    assert 64 <= reasoning <= 192
    assert usage.output_tokens == reasoning + toks(response.output_text)
    assert [item.type for item in response.output] == ["reasoning", "message"]


def test_responses_cap_is_incomplete(oai: OpenAI) -> None:
    response = oai.responses.create(model="gpt-5", input=unique("Think hard."), max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 16
    assert response.usage.output_tokens_details.reasoning_tokens == 16
    assert [item.type for item in response.output] == ["reasoning"]
    with pytest.raises(openai.BadRequestError, match="max_output_tokens"):
        oai.responses.create(model="gpt-5", input="x", max_output_tokens=15)


def test_responses_stream_events(oai: OpenAI) -> None:
    question = unique("Stream a response.")
    reference = oai.responses.create(model="gpt-5-nano", input=question)
    events = list(oai.responses.create(model="gpt-5-nano", input=question, stream=True))
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.output_item.done"]  # the reasoning item
    assert types[4:6] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == reference.output_text and len(deltas) == toks(reference.output_text)
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage == reference.usage
    assert events[0].response.id == completed.response.id


def test_responses_stream_helpers_sync_and_async(oai: OpenAI, url: str) -> None:
    question = unique("Helper stream.")
    with oai.responses.stream(model="gpt-4o", input=question) as stream:
        text_deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(text_deltas) == final.output_text
    assert final.usage is not None and final.usage.output_tokens == toks(final.output_text)

    async def run() -> Any:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client:
            async with client.responses.stream(model="gpt-4o", input=question) as astream:
                return await astream.get_final_response()

    assert asyncio.run(run()).output_text == final.output_text


def test_responses_stream_ends_incomplete_when_capped(oai: OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4o", input=unique("Long."), max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens == 16


# --- OpenAI embeddings -----------------------------------------------------------------------


def test_embeddings_base64_default_round_trips(oai: OpenAI, app: Starlette) -> None:
    texts = [unique("first text"), "second, text!"]
    decoded = oai.embeddings.create(model="text-embedding-3-small", input=texts)
    assert app.state.requests.last.body["encoding_format"] == "base64"
    floats = oai.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    assert [item.index for item in decoded.data] == [0, 1]
    for a, b in zip(decoded.data, floats.data):
        assert len(a.embedding) == 1536
        assert a.embedding == b.embedding
        assert math.isclose(math.sqrt(sum(v * v for v in a.embedding)), 1.0, rel_tol=1e-5)
    assert decoded.usage.prompt_tokens == decoded.usage.total_tokens == toks(texts[0]) + toks(texts[1])
    assert decoded.data[0].embedding != decoded.data[1].embedding


def test_embeddings_dimensions_and_raw_base64(oai: OpenAI) -> None:
    text = unique("shorten me")
    full = oai.embeddings.create(model="text-embedding-3-large", input=text).data[0].embedding
    assert len(full) == 3072
    short = oai.embeddings.create(model="text-embedding-3-large", input=text, dimensions=256).data[0].embedding
    assert len(short) == 256
    cosine = sum(a * b for a, b in zip(full[:256], short)) / math.sqrt(sum(a * a for a in full[:256]))
    assert math.isclose(cosine, 1.0, rel_tol=1e-5)
    raw = oai.embeddings.create(model="text-embedding-3-large", input=text, dimensions=8, encoding_format="base64")
    assert len(base64.b64decode(raw.data[0].embedding)) == 8 * 4  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        oai.embeddings.create(model="text-embedding-3-small", input=text, dimensions=4096)


# --- Anthropic messages ----------------------------------------------------------------------


def test_messages_json(claude: Anthropic) -> None:
    system, question = "Answer like a pirate.", unique("Where is the treasure?")
    raw = claude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=500, system=system, messages=user(question)
    )
    message = raw.parse()
    assert re.fullmatch(r"msg_01[A-Za-z0-9]{22}", message.id) and raw.headers["request-id"].startswith("req_")
    assert message.model == CLAUDE and message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    text = message.content[0].text  # type: ignore[union-attr]
    assert message.usage.input_tokens == prompt_tokens(system, question)
    assert message.usage.output_tokens == toks(text)
    assert message.usage.cache_read_input_tokens == message.usage.cache_creation_input_tokens == 0
    capped = claude.messages.create(model=CLAUDE, max_tokens=3, system=system, messages=user(question))
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 3


def test_messages_stream_helper_matches_json(claude: Anthropic) -> None:
    messages = user(unique("Stream it."))
    reference = claude.messages.create(model=CLAUDE, max_tokens=500, messages=messages)
    with claude.messages.stream(model=CLAUDE, max_tokens=500, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == reference.content[0].text  # type: ignore[union-attr]
    assert final.usage == reference.usage and final.stop_reason == "end_turn"


def test_messages_raw_stream_event_order(claude: Anthropic) -> None:
    stream = claude.messages.create(model=CLAUDE, max_tokens=500, messages=user(unique("Events.")), stream=True)
    events = list(stream)
    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert set(types[2:-3]) == {"content_block_delta"}
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")  # type: ignore[union-attr]
    assert delta.usage.output_tokens == toks(text) == len(types) - 5
    assert start.message.usage.input_tokens == delta.usage.input_tokens


def test_messages_thinking(claude: Anthropic, url: str) -> None:
    messages = user(unique("Think first."))
    message = claude.messages.create(
        model=CLAUDE, max_tokens=4000, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking_block, text_block = message.content
    details = message.usage.output_tokens_details
    assert details is not None and 256 <= details.thinking_tokens <= 384
    assert toks(thinking_block.thinking) == details.thinking_tokens  # type: ignore[union-attr]
    assert thinking_block.signature  # type: ignore[union-attr]
    assert message.usage.output_tokens == details.thinking_tokens + toks(text_block.text)  # type: ignore[union-attr]

    async def run() -> Any:
        async with AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as client:
            async with client.messages.stream(
                model=CLAUDE, max_tokens=4000, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024}
            ) as stream:
                return await stream.get_final_message()

    streamed = asyncio.run(run())
    assert streamed.usage == message.usage
    assert [b.type for b in streamed.content] == ["thinking", "text"]
    assert streamed.content[0].thinking == thinking_block.thinking  # type: ignore[union-attr]
    assert streamed.content[0].signature == thinking_block.signature  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        claude.messages.create(
            model=CLAUDE, max_tokens=1024, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024}
        )


def test_anthropic_cache_write_then_read(claude: Anthropic) -> None:
    long_system = unique("Policy: " + " ".join(f"rule{i}." for i in range(400)))
    system: Any = [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
    cached_prefix = 3 + toks(long_system)  # <start> system <sep> + text, up to the breakpoint
    q1, q2 = "First question?", "Second question!"
    first = claude.messages.create(model=CLAUDE, max_tokens=200, system=system, messages=user(q1))
    assert first.usage.cache_creation_input_tokens == cached_prefix
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == cached_prefix
    assert first.usage.input_tokens == prompt_tokens(long_system, q1) - cached_prefix
    with claude.messages.stream(model=CLAUDE, max_tokens=200, system=system, messages=user(q2)) as stream:
        events = list(stream)
        second = stream.get_final_message()
    start = events[0]
    assert start.type == "message_start" and start.message.usage.cache_read_input_tokens == cached_prefix
    assert second.usage.cache_read_input_tokens == cached_prefix
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == prompt_tokens(long_system, q2) - cached_prefix


def test_anthropic_cache_ttls_and_lookback(claude: Anthropic) -> None:
    tool = {"name": "search", "description": unique("Search the docs."), "input_schema": {"type": "object"}}
    tool_tokens = toks(json.dumps(tool, sort_keys=True, separators=(",", ":")))
    system_text = "You are a librarian. " * 20
    request: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 100,
        "tools": [{**tool, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "system": [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral"}}],
    }
    first = claude.messages.create(**request, messages=user("one"))
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == tool_tokens
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 3 + toks(system_text)
    # A later breakpoint on the user turn reads the remembered prefix and writes only the new part.
    turn = [{"role": "user", "content": [{"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}]}]
    second = claude.messages.create(**request, messages=turn)
    assert second.usage.cache_read_input_tokens == tool_tokens + 3 + toks(system_text)
    assert second.usage.cache_creation_input_tokens == 1 + 3 + toks("two")  # <end>, <start> user <sep>, "two"

    def marked(text: str, ttl: str = "5m") -> dict[str, Any]:
        return {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": ttl}}

    late_long_ttl: Any = [{"role": "user", "content": [marked("b", "1h")]}]
    with pytest.raises(anthropic.BadRequestError, match="ttl"):
        claude.messages.create(model=CLAUDE, max_tokens=100, system=[marked("a")], messages=late_long_ttl)
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control .* Found 5"):
        blocks: Any = [marked(letter) for letter in "abcde"]
        claude.messages.create(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": blocks}])


# --- Faults ----------------------------------------------------------------------------------


def test_rate_limit_by_header_shows_retry_after(oai: OpenAI, app: Starlette) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=user("hi"), extra_headers={"X-Emulator-Fault": "429,retry=3"}
        )
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "3000"
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert caught.value.request_id == headers["x-request-id"]
    record = app.state.requests.last
    assert record.status == 429 and record.faults == "429,retry=3"


def test_rate_limit_by_model_suffix_then_retry_succeeds(url: str, app: Starlette) -> None:
    model = f"gpt-4o-mini-{uuid.uuid4().hex[:6]}"
    with OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as no_retry:
        with pytest.raises(openai.RateLimitError) as caught:
            no_retry.chat.completions.create(model=f"{model}@429", messages=user("hi"))
        assert caught.value.response.headers["retry-after"] == "1"
    with OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=2) as retrying:
        completion = retrying.chat.completions.create(model=f"{model}@429,retry=0.01,times=2", messages=user("hi"))
    assert completion.model == model
    statuses = [r.status for r in app.state.requests if r.model == model]
    assert statuses == [429, 429, 429, 200]


def test_server_errors(oai: OpenAI, claude: Anthropic) -> None:
    with pytest.raises(openai.InternalServerError) as server_error:
        oai.chat.completions.create(model="gpt-4o@500", messages=user("hi"))
    assert server_error.value.status_code == 500
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.create(model=f"{CLAUDE}@500", max_tokens=10, messages=user("hi"))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(
            model=CLAUDE, max_tokens=10, messages=user("hi"), extra_headers={"X-Emulator-Fault": "529"}
        )
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_slow_first_byte_and_paced_stream(oai: OpenAI) -> None:
    started = time.perf_counter()
    completion = oai.chat.completions.create(model="gpt-4o-mini@delay=0.25", messages=user("hi"))
    assert time.perf_counter() - started >= 0.25
    assert completion.model == "gpt-4o-mini"

    started = time.perf_counter()
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=user(unique("pace")), stream=True,
        extra_headers={"X-Emulator-Fault": "interval=0.01,reply=30"},
    )
    first_token = None
    text = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first_token is None:
            first_token = time.perf_counter() - started
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    total = time.perf_counter() - started
    assert toks(text) == 30
    assert first_token is not None and total >= 0.3 and first_token < total / 2


def test_cut_streams_and_bodies(oai: OpenAI, claude: Anthropic) -> None:
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(
            model="gpt-4o@cut=4", messages=user("hi"), stream=True, stream_options={"include_usage": True}
        ):
            received.append(chunk)
    assert len(received) == 4 and all(chunk.usage is None for chunk in received)

    with pytest.raises(openai.APIConnectionError):
        list(oai.responses.create(model="gpt-4o@cut=3", input="hi", stream=True))

    seen: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):  # the anthropic SDK lets the transport error through
        with claude.messages.stream(model=f"{CLAUDE}@cut=5", max_tokens=100, messages=user("hi")) as stream:
            for event in stream:
                seen.append(event.type)
    assert seen[0] == "message_start" and "message_delta" not in seen

    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o@cut=10", messages=user("hi"))


def test_fault_syntax_errors_and_model_names_with_at(oai: OpenAI, claude: Anthropic) -> None:
    with pytest.raises(openai.BadRequestError, match="dealy=1"):
        oai.chat.completions.create(model="gpt-4o@dealy=1", messages=user("hi"))
    with pytest.raises(openai.BadRequestError, match="between 0 and 600"):
        oai.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={"X-Emulator-Fault": "delay=-1"})
    vertex_style = claude.messages.create(model="claude-sonnet-4@20250514", max_tokens=10, messages=user("hi"))
    assert vertex_style.model == "claude-sonnet-4@20250514"


# --- Auth, validation, request log -----------------------------------------------------------


def test_missing_credentials_are_401(oai: OpenAI, claude: Anthropic, app: Starlette) -> None:
    before = app.state.requests.total
    with pytest.raises(openai.AuthenticationError, match="API key"):
        oai.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers={"Authorization": ""})
    keyless = {"Authorization": anthropic.Omit()}  # this SDK sends its key as a bearer token
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=user("hi"), extra_headers=keyless)
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert [r.status for r in list(app.state.requests)[before:]] == [401, 401]


def test_bad_requests_name_the_field(oai: OpenAI, claude: Anthropic, url: str) -> None:
    with pytest.raises(openai.BadRequestError, match="'messages'") as missing:
        oai.post("/chat/completions", body={"model": "gpt-4o"}, cast_to=ChatCompletion)
    assert missing.value.body == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "missing_required_parameter",
    }
    with pytest.raises(openai.BadRequestError, match="'model'"):
        oai.post("/chat/completions", body={"model": 4, "messages": user("hi")}, cast_to=ChatCompletion)
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.role"):
        robot: Any = [{"role": "robot", "content": "hi"}]
        oai.chat.completions.create(model="gpt-4o", messages=robot)
    with pytest.raises(openai.BadRequestError, match="'input'"):
        oai.post("/responses", body={"model": "gpt-4o"}, cast_to=ChatCompletion)
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        oai.chat.completions.create(model="gpt-4o", messages=user("hi"), stream_options={"include_usage": True})
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required") as anthropic_missing:
        claude.post("/v1/messages", body={"model": CLAUDE, "messages": user("hi")}, cast_to=anthropic.types.Message)
    assert anthropic_missing.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="messages.0.content"):
        numeric: Any = [{"role": "user", "content": 5}]
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=numeric)
    invalid_json = httpx.post(
        f"{url}/v1/chat/completions", content=b"{not json", headers={"Authorization": "Bearer k"}
    )
    assert invalid_json.status_code == 400 and "not valid JSON" in invalid_json.json()["error"]["message"]
    unknown = httpx.post(f"{url}/v1/nowhere", headers={"Authorization": "Bearer k"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


def test_request_log_keeps_bodies_and_drops_credentials(oai: OpenAI, claude: Anthropic, app: Starlette) -> None:
    oai.chat.completions.create(
        model="gpt-4o@delay=0", messages=user("log me"), extra_headers={"X-Custom": "yes"}
    )
    record = app.state.requests.last
    assert (record.provider, record.path, record.model, record.requested_model) == (
        "openai", "/v1/chat/completions", "gpt-4o", "gpt-4o@delay=0",
    )
    assert record.headers["x-custom"] == "yes" and "authorization" not in record.headers
    assert record.body["messages"] == user("log me") and record.status == 200 and not record.stream
    claude.messages.create(model=CLAUDE, max_tokens=5, messages=user("log me"))
    record = app.state.requests.last
    assert record.path == "/v1/messages" and "x-api-key" not in record.headers
    assert "test-key" not in json.dumps(record.headers)


def test_each_app_starts_cold() -> None:
    first, second = create_app(), create_app()
    assert first.state.prompt_cache is not second.state.prompt_cache
    assert len(second.state.prompt_cache) == 0 and second.state.requests.total == 0
