"""Bedrock in telemetry mode, in a real IPython shell: real boto3 (through botocore/urllib3) and
the Anthropic/OpenAI Bedrock clients (through httpx2) against the emulator; usage, cache tokens
and costs checked by hand against what the SDK parsed and genai-prices' published aws prices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn

from support.shells import loaded_shell, ok, rows, run

pytestmark = pytest.mark.timeout(120)

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"  # a cross-region inference profile
# genai-prices' aws prices for Claude 3.5 Haiku, USD per token: input, output, cache read, cache write
HAIKU_PRICES = (0.8e-6, 4e-6, 0.08e-6, 1e-6)
NOVA_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0"

SETUP = """
import json, boto3
from botocore.config import Config
rt = boto3.client('bedrock-runtime', region_name='us-east-1', endpoint_url=PROVIDER_URL,
                  aws_access_key_id='AKIAEXAMPLESECRET', aws_secret_access_key='wJalrXUtnFEMI-SECRET',
                  config=Config(retries={'total_max_attempts': 1}))
MSG = [{'role': 'user', 'content': [{'text': 'Summarise the quarterly report in two lines.'}]}]
from anthropic import AnthropicBedrock
ab = AnthropicBedrock(aws_access_key='AKIAEXAMPLE', aws_secret_key='x-SECRET', aws_region='us-east-1',
                      base_url=PROVIDER_URL, max_retries=0)
SYSTEM = [{'text': 'You are a careful financial analyst. ' * 40}, {'cachePoint': {'type': 'default'}}]
def claude_body(**kw):
    return json.dumps({'anthropic_version': 'bedrock-2023-05-31', 'max_tokens': 200,
                       'messages': [{'role': 'user', 'content': 'Give me three budget tips.'}], **kw})
"""


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(sandbox_env, SETUP)


def _cost(units: dict[str, dict[str, int]], prices: tuple[float, float, float, float]) -> float:
    inp, out, read, write = prices
    return (
        units["text"].get("input", 0) * inp
        + units["text"].get("output", 0) * out
        + units.get("text_cache_read", {}).get("input", 0) * read
        + units.get("text_cache_write", {}).get("input", 0) * write
    )


def test_converse_with_cache_tokens_is_captured_priced_and_ingested_once(
    shell: InteractiveShell, sandbox_env: Any
) -> None:
    ok(
        shell,
        "%%payi --use-case bedrock-report --user ana\n"
        f"first = rt.converse(modelId={HAIKU!r}, messages=MSG, system=SYSTEM)\n"
        f"second = rt.converse(modelId={HAIKU!r}, messages=MSG, system=SYSTEM)\n",
    )
    first, second = shell.user_ns["first"], shell.user_ns["second"]
    assert first["usage"]["cacheWriteInputTokens"] > 0 and second["usage"]["cacheReadInputTokens"] > 0
    df = rows()
    assert len(df) == 2
    for row, reply in zip(df.itertuples(), (first, second)):
        usage = reply["usage"]
        assert (row.provider, row.category, row.operation) == (
            "bedrock",
            "system.aws.bedrock",
            "converse",
        )
        assert row.resource == HAIKU, "the model id as given (an inference profile)"
        assert row.provider_response_id == reply["ResponseMetadata"]["RequestId"]
        cached = usage.get("cacheReadInputTokens", 0) + usage.get("cacheWriteInputTokens", 0)
        assert row.input_tokens == usage["inputTokens"] + cached
        assert row.output_tokens == usage["outputTokens"]
        assert row.cache_read_tokens == usage.get("cacheReadInputTokens", 0)
        assert row.cache_write_tokens == usage.get("cacheWriteInputTokens", 0)
        expected = {"text": {"input": usage["inputTokens"], "output": usage["outputTokens"]}}
        if usage.get("cacheReadInputTokens"):
            expected["text_cache_read"] = {"input": usage["cacheReadInputTokens"]}
        if usage.get("cacheWriteInputTokens"):
            expected["text_cache_write"] = {"input": usage["cacheWriteInputTokens"]}
        assert row.units == expected
        assert row.est_cost_usd == pytest.approx(_cost(expected, HAIKU_PRICES))
        assert row.use_case_name == "bedrock-report" and row.user_id == "ana" and row.http_status == 200

    report = pn.flush(15)
    assert report.failed == 0 and report.pending == 0
    ids = {r["ResponseMetadata"]["RequestId"] for r in (first, second)}
    stored = [e for e in sandbox_env.events() if e["provider_response_id"] in ids]
    assert len(stored) == 2, "each call ingested exactly once"
    for event in stored:
        assert event["category"] == "system.aws.bedrock" and event["resource"] == HAIKU
    df = rows()
    assert list(df.status) == ["sent", "sent"]
    assert list(df.payi_cost_usd) == pytest.approx(list(df.est_cost_usd)), "the sandbox prices Bedrock ingest alike"


def test_converse_stream_reads_the_metadata_event(shell: InteractiveShell) -> None:
    ok(
        shell,
        f"%%payi\nresp = rt.converse_stream(modelId={NOVA_ARN!r}, messages=MSG)\nevents = list(resp['stream'])\n",
    )
    meta = shell.user_ns["events"][-1]["metadata"]
    row = rows().iloc[0]
    assert row.operation == "converse-stream" and row.streaming and not row.partial
    assert row.resource == NOVA_ARN
    assert row.input_tokens == meta["usage"]["inputTokens"] and row.output_tokens == meta["usage"]["outputTokens"]
    assert row.provider_response_id == shell.user_ns["resp"]["ResponseMetadata"]["RequestId"]
    # amazon.nova-lite-v1:0 on aws: $0.06 / $0.24 per million tokens
    assert row.est_cost_usd == pytest.approx(
        meta["usage"]["inputTokens"] * 0.06e-6 + meta["usage"]["outputTokens"] * 0.24e-6
    )
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in shell.user_ns["events"] if "contentBlockDelta" in e]
    assert len(texts) == meta["usage"]["outputTokens"], "the caller's stream arrived whole"


@pytest.mark.parametrize(
    ("model", "body", "usage_of"),
    [
        (
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "claude_body()",
            lambda b: (b["usage"]["input_tokens"], b["usage"]["output_tokens"]),
        ),
        (
            "amazon.nova-lite-v1:0",
            "json.dumps({'messages': MSG, 'inferenceConfig': {'maxTokens': 100}})",
            lambda b: (b["usage"]["inputTokens"], b["usage"]["outputTokens"]),
        ),
        (
            "meta.llama3-8b-instruct-v1:0",
            "json.dumps({'prompt': 'Name three colours.', 'max_gen_len': 100})",
            lambda b: (b["prompt_token_count"], b["generation_token_count"]),
        ),
        (
            "openai.gpt-oss-20b-1:0",
            "json.dumps({'messages': [{'role': 'user', 'content': 'Name three colours.'}]})",
            lambda b: (b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"]),
        ),
    ],
)
def test_invoke_model_is_counted_without_reading_the_callers_body(
    shell: InteractiveShell, model: str, body: str, usage_of: Any
) -> None:
    ok(shell, f"%%payi\nresp = rt.invoke_model(modelId={model!r}, body={body})\n")
    row = rows().iloc[0]  # recorded before the caller read anything
    assert row.operation == "invoke" and row.resource == model and not row.streaming
    raw = shell.user_ns["resp"]["body"].read()  # the body is still the caller's, whole
    data = json.loads(raw)
    assert (row.input_tokens, row.output_tokens) == usage_of(data)
    assert row.est_cost_usd > 0
    assert len(rows()) == 1, "reading the body later adds nothing"


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude_body()"),
        ("amazon.nova-lite-v1:0", "json.dumps({'messages': MSG})"),
        (
            "meta.llama3-8b-instruct-v1:0",
            "json.dumps({'prompt': 'Name three colours.'})",
        ),
        (
            "openai.gpt-oss-20b-1:0",
            "json.dumps({'messages': [{'role': 'user', 'content': 'Hi'}]})",
        ),
    ],
)
def test_invoke_stream_reads_the_invocation_metrics(shell: InteractiveShell, model: str, body: str) -> None:
    ok(
        shell,
        "%%payi\n"
        f"resp = rt.invoke_model_with_response_stream(modelId={model!r}, body={body})\n"
        "chunks = [json.loads(e['chunk']['bytes']) for e in resp['body']]\n",
    )
    metrics = shell.user_ns["chunks"][-1]["amazon-bedrock-invocationMetrics"]
    row = rows().iloc[0]
    assert row.operation == "invoke-with-response-stream" and row.streaming and not row.partial
    assert row.input_tokens == metrics["inputTokenCount"] and row.output_tokens == metrics["outputTokenCount"]
    assert row.est_cost_usd > 0


def test_cut_and_abandoned_streams_are_recorded_once_as_partial(
    shell: InteractiveShell,
) -> None:
    result = run(
        shell,
        "%%payi\n"
        "resp = rt.converse_stream(modelId='amazon.nova-lite-v1:0@cut=5', messages=MSG)\n"
        "seen = []\n"
        "for event in resp['stream']:\n"
        "    seen.append(event)\n",
    )
    assert not result.success, "the cut reaches the caller as the SDK raises it"
    ok(
        shell,
        "%%payi\n"
        "resp2 = rt.invoke_model_with_response_stream(modelId='meta.llama3-8b-instruct-v1:0', body=json.dumps({'prompt': 'Hi'}))\n"
        "it = iter(resp2['body']); first = next(it); second = next(it)\n"
        "del it, resp2\n"
        "import gc; gc.collect()\n",
    )
    df = rows()
    assert len(df) == 2
    cut, dropped = df.iloc[0], df.iloc[1]
    deltas = sum(1 for e in shell.user_ns["seen"] if "contentBlockDelta" in e)
    assert cut.partial and cut.streaming and cut.output_tokens == deltas and cut.error
    assert dropped.partial and dropped.output_tokens >= 2 and dropped.error


def test_throttling_and_server_errors_are_recorded_and_still_raised(
    shell: InteractiveShell,
) -> None:
    ok(
        shell,
        "%%payi\n"
        "errors = []\n"
        "for model in ('amazon.nova-lite-v1:0@429', 'amazon.nova-lite-v1:0@500'):\n"
        "    try:\n"
        "        rt.converse(modelId=model, messages=MSG)\n"
        "    except rt.exceptions.ClientError as exc:\n"
        "        errors.append(exc.response['Error']['Code'])\n",
    )
    assert shell.user_ns["errors"] == ["ThrottlingException", "InternalServerException"]
    df = rows()
    assert list(df.http_status) == [429, 500]
    assert "Too many requests" in df.iloc[0].error
    assert list(df.resource) == [
        "amazon.nova-lite-v1:0@429",
        "amazon.nova-lite-v1:0@500",
    ], "the model id as given"
    assert list(df.output_tokens) == [0, 0]


def test_botocore_retries_are_one_row_per_attempt(shell: InteractiveShell) -> None:
    ok(
        shell,
        "retrying = boto3.client('bedrock-runtime', region_name='us-east-1', endpoint_url=PROVIDER_URL,\n"
        "    aws_access_key_id='AKIAEXAMPLE', aws_secret_access_key='x',\n"
        "    config=Config(retries={'mode': 'standard', 'total_max_attempts': 3}))\n",
    )
    ok(
        shell,
        "%%payi\nr = retrying.converse(modelId='amazon.nova-lite-v1:0@429,times=1', messages=MSG)\n",
    )
    df = rows()
    assert list(df.http_status) == [429, 200], "the throttled attempt and the retry that succeeded"
    assert df.iloc[0].output_tokens == 0 and df.iloc[1].output_tokens == shell.user_ns["r"]["usage"]["outputTokens"]
    assert shell.user_ns["r"]["ResponseMetadata"]["RetryAttempts"] == 1


def test_a_client_created_before_load_ext_is_captured(sandbox_env: Any) -> None:
    ip = InteractiveShell.instance()
    ip.user_ns["PROVIDER_URL"] = sandbox_env.provider_url
    ok(ip, SETUP)  # the client exists before the extension is loaded
    ok(ip, "%load_ext payi_notebook")
    try:
        ok(ip, f"%%payi\nr = rt.converse(modelId={HAIKU!r}, messages=MSG)\n")
        assert rows().iloc[0].provider_response_id == ip.user_ns["r"]["ResponseMetadata"]["RequestId"]
    finally:
        ok(ip, "%unload_ext payi_notebook")


def test_calls_outside_a_tracked_cell_pass_untouched(shell: InteractiveShell) -> None:
    ok(shell, f"r = rt.converse(modelId={HAIKU!r}, messages=MSG)")
    assert shell.user_ns["r"]["usage"]["outputTokens"] > 0
    assert len(rows()) == 0


def test_credentials_stay_out_of_the_ledger_and_the_ingest(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(shell, f"%%payi\nr = rt.converse(modelId={HAIKU!r}, messages=MSG)\n")
    pn.flush(15)
    request_id = shell.user_ns["r"]["ResponseMetadata"]["RequestId"]
    (event,) = [e for e in sandbox_env.events() if e["provider_response_id"] == request_id]
    text = json.dumps(event) + rows().to_json(date_format="iso")
    assert "SECRET" not in text and "AKIAEXAMPLE" not in text and "Signature=" not in text


def test_anthropic_bedrock_client_json_and_binary_stream(
    shell: InteractiveShell,
) -> None:
    ok(
        shell,
        "%%payi\n"
        f"m = ab.messages.create(model={HAIKU!r}, max_tokens=100, messages=[{{'role': 'user', 'content': 'Hi there'}}])\n"
        f"with ab.messages.stream(model={HAIKU!r}, max_tokens=100, messages=[{{'role': 'user', 'content': 'Hi there'}}]) as s:\n"
        "    text = ''.join(s.text_stream)\n"
        "    final = s.get_final_message()\n",
    )
    m, final = shell.user_ns["m"], shell.user_ns["final"]
    df = rows()
    assert list(df.operation) == ["invoke", "invoke-with-response-stream"]
    assert set(df.provider) == {"bedrock"} and set(df.resource) == {HAIKU}
    for row, message in zip(df.itertuples(), (m, final)):
        assert (row.input_tokens, row.output_tokens) == (
            message.usage.input_tokens,
            message.usage.output_tokens,
        )
        assert row.est_cost_usd == pytest.approx(
            message.usage.input_tokens * HAIKU_PRICES[0] + message.usage.output_tokens * HAIKU_PRICES[1]
        )
    assert shell.user_ns["text"] == final.content[0].text and df.iloc[1].streaming and not df.iloc[1].partial


def test_bedrock_openai_and_mantle_clients_are_billed_as_bedrock(
    shell: InteractiveShell,
) -> None:
    ok(
        shell,
        "from openai import BedrockOpenAI\n"
        "from anthropic import AnthropicBedrockMantle\n"
        "bo = BedrockOpenAI(api_key='bedrock-key-SECRET', base_url=PROVIDER_URL + '/bedrock/openai/v1', max_retries=0)\n"
        "mantle = AnthropicBedrockMantle(api_key='bedrock-key-SECRET', base_url=PROVIDER_URL + '/bedrock/anthropic', max_retries=0)\n",
    )
    ok(
        shell,
        "%%payi\n"
        "c = bo.chat.completions.create(model='openai.gpt-oss-20b-1:0', messages=[{'role': 'user', 'content': 'Hi'}])\n"
        "mm = mantle.messages.create(model='anthropic.claude-3-5-haiku-20241022-v1:0', max_tokens=50,"
        " messages=[{'role': 'user', 'content': 'Hi'}])\n",
    )
    c, mm = shell.user_ns["c"], shell.user_ns["mm"]
    df = rows()
    assert list(df.category) == ["system.aws.bedrock"] * 2 and list(df.provider) == ["bedrock"] * 2
    assert list(df.operation) == ["chat", "messages"]
    assert (df.iloc[0].input_tokens, df.iloc[0].output_tokens) == (
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
    )
    assert (df.iloc[1].input_tokens, df.iloc[1].output_tokens) == (
        mm.usage.input_tokens,
        mm.usage.output_tokens,
    )
    assert df.iloc[0].est_cost_usd > 0 and df.iloc[1].est_cost_usd > 0
