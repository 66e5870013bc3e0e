"""The provider adapters on responses in the providers' documented shapes (``fixtures/``, not the
emulator's): what each reads (id, model, usage, completeness) and the units that usage becomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from payi_notebook.providers.anthropic import AnthropicMessages
from payi_notebook.providers.base import ApiAdapter, Observation, read_error
from payi_notebook.providers.bedrock import Converse, Invoke
from payi_notebook.providers.gemini import GeminiGenerate
from payi_notebook.providers.openai import OpenAIChat, OpenAIEmbeddings, OpenAIResponses
from payi_notebook.providers.sse import SSESplitter, parse_event
from payi_notebook.units import units_for

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> Any:
    path = FIXTURES / name
    return path.read_bytes() if path.suffix == ".sse" else json.loads(path.read_text())


def drive(adapter: ApiAdapter, body: Any = None, stream: bytes | None = None, headers: Any = None) -> Observation:
    """What capture does with one response: headers, then the JSON body or each stream event, then settle."""
    obs = Observation()
    if headers is not None:
        adapter.read_headers(obs, headers)
    if body is not None:
        adapter.read_json(obs, body)
    if stream is not None:
        splitter = SSESplitter()
        for raw in splitter.split(stream):
            assert adapter.read_event(obs, parse_event(raw), False, 0.0)
        assert splitter.tail() == b""
    adapter.settle(obs)
    return obs


def units(adapter: ApiAdapter, obs: Observation) -> dict[str, dict[str, int]]:
    return units_for(adapter.wire, obs.usage, obs.model)


def test_openai_chat_json_cached_prompt_tokens_are_cache_reads() -> None:
    adapter = OpenAIChat()
    obs = drive(adapter, fixture("openai_chat.json"))
    assert (obs.response_id, obs.model, obs.complete) == ("chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "gpt-4o-2024-08-06", True)
    assert units(adapter, obs) == {"text": {"input": 93, "output": 46}, "text_cache_read": {"input": 1024}}


def test_openai_chat_stream_takes_usage_from_the_final_chunk() -> None:
    adapter = OpenAIChat()
    obs = drive(adapter, stream=fixture("openai_chat_stream.sse"))
    assert (obs.response_id, obs.model, obs.complete) == ("chatcmpl-123", "gpt-4o-mini-2024-07-18", True)
    assert obs.usage is not None and obs.usage["total_tokens"] == 22
    assert obs.deltas == 4
    assert units(adapter, obs) == {"text": {"input": 19, "output": 3}}


def test_openai_chat_stream_hides_the_usage_chunk_only_when_we_asked_for_it() -> None:
    adapter, raw = OpenAIChat(), fixture("openai_chat_stream.sse")
    events = [parse_event(e) for e in SSESplitter().split(raw)]
    usage_chunk = events[-2]
    assert adapter.may_hide(usage_chunk.raw) and not adapter.may_hide(events[1].raw)
    assert adapter.read_event(Observation(), usage_chunk, True, 0.0) is False
    assert adapter.read_event(Observation(), usage_chunk, False, 0.0) is True
    body: dict[str, Any] = {"stream": True, "stream_options": {"include_obfuscation": False}}
    assert adapter.prepare(body) and body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert not adapter.prepare({"stream": True, "stream_options": {"include_usage": True}})
    assert not adapter.prepare({"messages": []})


def test_openai_responses_stream_reads_the_completed_event_and_reasoning() -> None:
    adapter = OpenAIResponses()
    obs = drive(adapter, stream=fixture("openai_responses_stream.sse"))
    assert obs.response_id == "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654"
    assert (obs.model, obs.complete, obs.deltas) == ("o3-mini-2025-01-31", True, 2)
    assert units(adapter, obs) == {"text": {"input": 37, "output": 11}, "reasoning": {"output": 128}}


def test_openai_responses_stream_cut_before_completion_is_not_complete() -> None:
    raw = fixture("openai_responses_stream.sse")
    cut = raw[: raw.index(b"event: response.completed")]
    obs = drive(OpenAIResponses(), stream=cut)
    assert not obs.complete and obs.usage is None and obs.deltas == 2


def test_openai_embeddings_have_prompt_tokens_only() -> None:
    adapter = OpenAIEmbeddings()
    obs = drive(adapter, fixture("openai_embeddings.json"))
    assert obs.complete and obs.model == "text-embedding-3-small"
    assert units(adapter, obs) == {"text": {"input": 8, "output": 0}}


def test_anthropic_message_splits_cache_writes_by_ttl() -> None:
    adapter = AnthropicMessages()
    obs = drive(adapter, fixture("anthropic_message.json"))
    assert (obs.response_id, obs.model) == ("msg_013Zva2CMHLNnXjNJJKqJ2EF", "claude-sonnet-4-5-20250929")
    assert units(adapter, obs) == {
        "text": {"input": 21, "output": 393},
        "text_cache_write": {"input": 900},
        "text_cache_write_1h": {"input": 300},
        "text_cache_read": {"input": 3000},
    }


def test_anthropic_stream_joins_start_usage_with_the_final_delta() -> None:
    adapter = AnthropicMessages()
    obs = drive(adapter, stream=fixture("anthropic_messages_stream.sse"))
    assert (obs.response_id, obs.model) == ("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-3-5-haiku-20241022")
    assert obs.complete and obs.deltas == 2
    assert units(adapter, obs) == {"text": {"input": 25, "output": 15}, "text_cache_read": {"input": 2048}}


def test_an_anthropic_stream_without_its_message_delta_is_incomplete() -> None:
    raw = fixture("anthropic_messages_stream.sse")
    obs = drive(AnthropicMessages(), stream=raw[: raw.index(b"event: message_delta")])
    assert not obs.complete and obs.usage is not None and obs.usage["output_tokens"] == 1


def test_anthropic_stream_error_event_is_kept() -> None:
    error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    obs = drive(AnthropicMessages(), stream=error)
    assert obs.error == "Overloaded"


def test_gemini_generate_counts_modalities_cache_and_thoughts() -> None:
    adapter = GeminiGenerate()
    obs = drive(adapter, fixture("gemini_generate.json"))
    assert (obs.response_id, obs.model, obs.complete) == ("Xq3MaNW0KcLyqtsP7pj8uQk", "gemini-2.5-flash", True)
    assert adapter.resource("gemini-2.5-flash-latest", obs.model) == "google.gemini-2.5-flash"
    assert units(adapter, obs) == {
        "text": {"input": 30, "output": 12},
        "text_cache_read": {"input": 742},
        "vision_cache_read": {"input": 258},
        "reasoning": {"output": 289},
    }


def test_gemini_stream_takes_the_last_running_total() -> None:
    adapter = GeminiGenerate()
    obs = drive(adapter, stream=fixture("gemini_generate_stream.sse"))
    assert (obs.model, obs.complete, obs.deltas) == ("gemini-2.0-flash", True, 2)
    assert units(adapter, obs) == {"text": {"input": 9, "output": 5}}


def test_bedrock_converse_keeps_cache_reads_and_writes() -> None:
    adapter = Converse()
    obs = drive(adapter, fixture("bedrock_converse.json"), headers={"x-amzn-requestid": "9d3c8f4e-req"})
    assert (obs.response_id, obs.complete) == ("9d3c8f4e-req", True)
    assert units(adapter, obs) == {
        "text": {"input": 30, "output": 628},
        "text_cache_write": {"input": 100},
        "text_cache_read": {"input": 4000},
    }


def test_bedrock_invoke_reads_the_model_body_over_the_headers() -> None:
    headers = [("x-amzn-requestid", "req-7"), ("x-amzn-bedrock-input-token-count", "14"), ("x-amzn-bedrock-output-token-count", "10")]
    adapter = Invoke()
    obs = drive(adapter, fixture("bedrock_invoke_anthropic.json"), headers=headers)
    assert (obs.response_id, obs.model, obs.complete) == ("req-7", "claude-3-5-haiku-20241022", True)
    assert units(adapter, obs) == {"text": {"input": 14, "output": 10}}
    llama = drive(Invoke(), fixture("bedrock_invoke_llama.json"))
    assert units(adapter, llama) == {"text": {"input": 17, "output": 9}}


def test_bedrock_invoke_falls_back_to_the_token_headers() -> None:
    headers = {"x-amzn-requestid": "req-8", "x-amzn-bedrock-input-token-count": "120", "x-amzn-bedrock-output-token-count": "7"}
    adapter = Invoke()
    obs = drive(adapter, {"output": "an image model's body with no usage"}, headers=headers)
    assert obs.complete and units(adapter, obs) == {"text": {"input": 120, "output": 7}}


@pytest.mark.parametrize(
    ("adapter", "body", "message"),
    [
        (OpenAIChat(), {"error": {"message": "Rate limit reached", "type": "requests"}}, "Rate limit reached"),
        (AnthropicMessages(), {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}, "bad"),
    ],
)
def test_error_bodies_leave_no_usage_and_name_the_error(adapter: ApiAdapter, body: dict[str, Any], message: str) -> None:
    obs = drive(adapter, body)
    assert obs.usage is None and not obs.complete
    read_error(obs, body)
    assert obs.error == message


def test_an_anthropic_message_delta_with_cumulative_input_counts_does_not_double_them() -> None:
    """Newer API versions repeat the input and cache counts on ``message_delta`` (cumulative, not added)."""
    raw = fixture("anthropic_messages_stream.sse").replace(
        b'"usage":{"output_tokens":15}',
        b'"usage":{"input_tokens":25,"cache_creation_input_tokens":null,"cache_read_input_tokens":2048,"output_tokens":15}',
    )
    assert b'"cache_read_input_tokens":2048,"output_tokens":15' in raw
    adapter = AnthropicMessages()
    obs = drive(adapter, stream=raw)
    assert units(adapter, obs) == {"text": {"input": 25, "output": 15}, "text_cache_read": {"input": 2048}}
