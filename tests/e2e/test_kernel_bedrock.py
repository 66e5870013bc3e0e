"""Bedrock in a real kernel (nbclient): a boto3 client created *before* ``%load_ext`` is captured,
in telemetry and in proxy mode, JSON and streaming, with AnthropicBedrock beside it; every call
reaches Pay-i (the sandbox) exactly once, priced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.kernels import kernel_env, notebook, run_notebook, text_of

pytestmark = pytest.mark.timeout(240)

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
CELLS = [
    # the client exists before the extension is loaded (Pay-i's SDK never instruments such a client)
    "import os, json, boto3\n"
    "from botocore.config import Config\n"
    "URL = os.environ['PAYI_SANDBOX_PROVIDER_URL']\n"
    "rt = boto3.client('bedrock-runtime', region_name='us-east-1', endpoint_url=URL,\n"
    "                  aws_access_key_id='AKIAEXAMPLE', aws_secret_access_key='x', config=Config(retries={'total_max_attempts': 1}))\n"
    "MSG = [{'role': 'user', 'content': [{'text': 'Plan the quarter.'}]}]\n"
    "SYSTEM = [{'text': 'You are a planner. ' * 60}, {'cachePoint': {'type': 'default'}}]",
    "%load_ext payi_notebook",
    "import payi_notebook as pn\n"
    "from anthropic import AnthropicBedrock\n"
    "ab = AnthropicBedrock(aws_access_key='AKIAEXAMPLE', aws_secret_key='x', aws_region='us-east-1', base_url=URL, max_retries=0)\n"
    "replies = {}",
    "%%payi --use-case plan\n"
    f"replies['json'] = rt.converse(modelId={HAIKU!r}, messages=MSG, system=SYSTEM)\n"
    f"replies['cached'] = rt.converse(modelId={HAIKU!r}, messages=MSG, system=SYSTEM)",
    "%%payi --use-case plan\n"
    f"stream = rt.converse_stream(modelId={HAIKU!r}, messages=MSG)\n"
    "replies['stream'] = list(stream['stream'])[-1]['metadata']",
    "%%payi --proxy --use-case plan\n"
    f"replies['proxy'] = rt.converse(modelId={HAIKU!r}, messages=MSG)\n"
    f"replies['proxy_stream'] = list(rt.converse_stream(modelId={HAIKU!r}, messages=MSG)['stream'])[-1]['metadata']\n"
    f"m = ab.messages.create(model={HAIKU!r}, max_tokens=50, messages=[{{'role': 'user', 'content': 'Hi'}}])",
    "pn.flush(30)\n"
    "df = pn.ledger().df\n"
    "cols = ['provider', 'operation', 'mode', 'status', 'resource', 'input_tokens', 'output_tokens',\n"
    "        'cache_read_tokens', 'cache_write_tokens', 'est_cost_usd', 'payi_cost_usd', 'provider_response_id']\n"
    "print(json.dumps({'rows': json.loads(df[cols].to_json(orient='records')),\n"
    "                  'usage': {k: v.get('usage', v) for k, v in replies.items()}}))",
]


@pytest.fixture(scope="module")
def executed(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    work = tmp_path_factory.mktemp("bedrock-kernel")
    nb = run_notebook(notebook(CELLS), kernel_env(sandbox, work / "data"), work, timeout=180)
    summary = json.loads(text_of(nb.cells[-1]).strip().splitlines()[-1])
    return sandbox, summary


def test_a_client_made_before_load_ext_is_captured_in_both_modes(
    executed: tuple[Any, dict[str, Any]],
) -> None:
    sandbox, summary = executed
    rows = summary["rows"]
    assert [(r["operation"], r["mode"], r["status"]) for r in rows] == [
        ("converse", "telemetry", "sent"),
        ("converse", "telemetry", "sent"),
        ("converse-stream", "telemetry", "sent"),
        ("converse", "proxy", "proxied"),
        ("converse-stream", "proxy", "proxied"),
        ("invoke", "proxy", "proxied"),
    ]
    assert {r["provider"] for r in rows} == {"bedrock"} and {r["resource"] for r in rows} == {HAIKU}
    usage = summary["usage"]
    first, cached = rows[0], rows[1]
    assert first["cache_write_tokens"] == usage["json"]["cacheWriteInputTokens"] > 0
    assert cached["cache_read_tokens"] == usage["cached"]["cacheReadInputTokens"] > 0
    assert first["input_tokens"] == usage["json"]["inputTokens"] + usage["json"]["cacheWriteInputTokens"]
    assert rows[2]["output_tokens"] == usage["stream"]["outputTokens"]
    assert rows[4]["output_tokens"] == usage["proxy_stream"]["outputTokens"]
    for row in rows:
        assert row["payi_cost_usd"] is not None and row["payi_cost_usd"] > 0
    for row in rows[:3]:
        assert row["payi_cost_usd"] == pytest.approx(row["est_cost_usd"]), "ingest priced as estimated"


def test_every_call_reached_pay_i_exactly_once(
    executed: tuple[Any, dict[str, Any]],
) -> None:
    sandbox, summary = executed
    ids = [r["provider_response_id"] for r in summary["rows"]]
    stored = [e for e in sandbox.events() if e["provider_response_id"] in set(ids)]
    assert len(stored) == len(ids) == len(set(ids))
    sources = {e["provider_response_id"]: e["source"] for e in stored}
    assert all(sources[i] in ("ingest", "bulk") for i in ids[:3]), "telemetry calls were ingested"
    assert all(sources[i] == "proxy" for i in ids[3:]), "proxied calls were never ingested"
