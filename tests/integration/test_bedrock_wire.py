"""Bedrock's pieces on their own: the event-stream framing against botocore's own decoder, the
units mapping (cache tokens, 1h writes), routes, and a journalled Converse call rebuilding into
the event the ledger shows (crash recovery)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer

import payi_notebook as pn
from payi_notebook.capture import RouteTable
from payi_notebook.capture.build import event_from_journal
from payi_notebook.pricing import price_units
from payi_notebook.providers import eventstream
from payi_notebook.units import bedrock_units, token_counts, units_for

from integration.test_journal import journal_records

pytestmark = pytest.mark.timeout(120)


def test_event_stream_framing_is_what_botocore_decodes() -> None:
    payload = json.dumps({"contentBlockIndex": 0, "delta": {"text": "héllo"}}).encode()
    frames = eventstream.event("contentBlockDelta", payload) + eventstream.exception(
        "throttlingException", b'{"message":"slow down"}'
    )
    buffer = EventStreamBuffer()
    buffer.add_data(frames)  # botocore checks both CRCs of every message
    decoded = list(buffer)
    assert decoded[0].headers[":event-type"] == "contentBlockDelta" and decoded[0].payload == payload
    assert decoded[1].headers[":message-type"] == "exception"
    splitter = eventstream.Splitter()
    parts = [splitter.split(frames[i : i + 7]) for i in range(0, len(frames), 7)]  # fed in odd slices
    messages = [m for part in parts for m in part]
    assert len(messages) == 2 and splitter.tail() == b""
    first, second = (eventstream.as_sse(m) for m in messages)
    assert (first.event, json.loads(first.data)) == ("contentBlockDelta", json.loads(payload))
    assert second.event == "error:throttlingException"
    with pytest.raises(ValueError):
        eventstream.Splitter().split(b"data: not an event stream\n\n")


def test_converse_units_send_cache_reads_and_writes_with_1h_split() -> None:
    usage = {
        "inputTokens": 120,
        "outputTokens": 40,
        "cacheReadInputTokens": 2000,
        "cacheWriteInputTokens": 900,
        "cacheDetails": [{"ttl": "5m", "inputTokens": 600}, {"ttl": "1h", "inputTokens": 300}],
    }
    units = bedrock_units(usage)
    assert units == {
        "text": {"input": 120, "output": 40},
        "text_cache_read": {"input": 2000},
        "text_cache_write": {"input": 600},
        "text_cache_write_1h": {"input": 300},
    }
    assert token_counts(units) == (120 + 2000 + 900, 40, 2000, 900, 0)
    # Claude 3.5 Haiku on Bedrock: input 0.8, output 4, cache read 0.08, cache write 1 (5m) USD per million
    price = price_units("system.aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", units)
    assert price.unknown_units == {}
    assert price.total > (120 * 0.8 + 40 * 4 + 2000 * 0.08 + 900 * 1.0) * 1e-6 * 0.99


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3},
            {"text": {"input": 10, "output": 5}, "text_cache_read": {"input": 3}},
        ),
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, {"text": {"input": 10, "output": 5}}),
        ({"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}, {"text": {"input": 10, "output": 5}}),
        ({"inputTokens": 7, "outputTokens": 2}, {"text": {"input": 7, "output": 2}}),
    ],
)
def test_bedrock_usage_shapes_map_by_their_fields(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    """Anthropic and OpenAI bodies through Bedrock keep their own mapping (Responses usage is OpenAI's)."""
    assert units_for("bedrock", usage) == expected


def test_routes_for_boto3_anthropic_mantle_and_the_proxy() -> None:
    table = RouteTable({"bedrock": ["http://127.0.0.1:9999"]}, "http://127.0.0.1:8765")
    boto = table.match(
        "https",
        "bedrock-runtime.eu-west-3.amazonaws.com",
        None,
        "/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A1%3Ainference-profile%2Feu.amazon.nova-lite-v1%3A0/converse",
    )
    assert (boto.provider, boto.operation, boto.params["model"]) == (
        "bedrock",
        "converse",
        "arn:aws:bedrock:eu-west-3:1:inference-profile/eu.amazon.nova-lite-v1:0",
    )
    claude = table.match(
        "https",
        "bedrock-runtime-fips.us-east-1.amazonaws.com",
        None,
        "/model/anthropic.claude-3-5-haiku-20241022-v1:0/invoke-with-response-stream",
    )
    assert (
        claude.operation == "invoke-with-response-stream" and claude.params["model"] == "anthropic.claude-3-5-haiku-20241022-v1:0"
    )
    assert (
        table.match("https", "bedrock-mantle.us-east-1.api.aws", None, "/anthropic/v1/messages").operation == "messages"
    )
    proxied = table.match("http", "127.0.0.1", 8765, "/api/v1/proxy/aws.bedrock/model/x/converse-stream")
    assert proxied.proxied and proxied.operation == "converse-stream"
    assert (
        table.match("https", "bedrock-runtime.us-east-1.amazonaws.com", None, "/guardrail/g1/version/1/apply") is None
    )
    assert table.match("https", "bedrock.us-east-1.amazonaws.com", None, "/model/x/converse") is None


def test_a_journalled_converse_call_rebuilds_into_the_same_event(sandbox_env: Any, tmp_path: Path) -> None:
    sandbox_env.inject_fault(route="*", status=503, count=10_000)  # keep the event pending (journalled)
    try:
        rt = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=sandbox_env.provider_url,
            aws_access_key_id="AKIAEXAMPLE",
            aws_secret_access_key="secret-SECRET",
            config=Config(retries={"total_max_attempts": 1}),
        )
        system = [{"text": "Cache me. " * 60}, {"cachePoint": {"type": "default"}}]
        with pn.track(use_case_name="journal-bedrock", user_id="jo"):
            reply = rt.converse(
                modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0",
                system=system,
                messages=[{"role": "user", "content": [{"text": "Rebuild me."}]}],
            )
        records = journal_records(tmp_path / "spool")
        df = pn.ledger().df.set_index("event_id")
        ((event_id, record),) = records.items()
        rebuilt = event_from_journal(event_id, record)
        row = df.loc[event_id]
        assert rebuilt.provider_response_id == row.provider_response_id == reply["ResponseMetadata"]["RequestId"]
        assert (rebuilt.provider, rebuilt.category, rebuilt.resource) == ("bedrock", "system.aws.bedrock", row.resource)
        assert (
            rebuilt.units == row.units
            and rebuilt.units["text_cache_write"]["input"] == reply["usage"]["cacheWriteInputTokens"]
        )
        assert "SECRET" not in json.dumps(record) and "Signature=" not in json.dumps(record)
    finally:
        sandbox_env.clear_faults()
    assert pn.flush(30).sent == 1


def test_invoke_stream_chunks_carry_base64_json() -> None:
    """The emulator's invoke-stream framing, decoded the way capture reads it."""
    inner = {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 4}}
    wrapped = json.dumps({"bytes": base64.b64encode(json.dumps(inner).encode()).decode()}).encode()
    event = eventstream.as_sse(eventstream.event("chunk", wrapped))
    assert event.event == "chunk" and json.loads(base64.b64decode(json.loads(event.data)["bytes"])) == inner
