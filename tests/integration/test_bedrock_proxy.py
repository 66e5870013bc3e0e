"""Bedrock in proxy mode, in a real IPython shell: real boto3 and AnthropicBedrock routed through the
sandbox's /api/v1/proxy/aws.bedrock routes (SigV4 passed through), Pay-i's cost read from
xproxy_result, a Block limit refusing a call, and exactly one Pay-i event per call in any mix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import payi_notebook as pn

from support.shells import loaded_shell, ok, rows, run

pytestmark = pytest.mark.timeout(120)

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
SETUP = (
    """
import json, boto3
from botocore.config import Config
import payi_notebook as pn
def bedrock(url=PROVIDER_URL):
    return boto3.client('bedrock-runtime', region_name='us-east-1', endpoint_url=url,
                        aws_access_key_id='AKIAEXAMPLE', aws_secret_access_key='wJalr-SECRET',
                        config=Config(retries={'total_max_attempts': 1}))
rt = bedrock()
MSG = [{'role': 'user', 'content': [{'text': 'Give me three budget tips.'}]}]
from anthropic import AnthropicBedrock
ab = AnthropicBedrock(aws_access_key='AKIAEXAMPLE', aws_secret_key='x-SECRET', aws_region='us-east-1',
                      base_url=PROVIDER_URL, max_retries=0)
def converse(client=None, **kw):
    return (client or rt).converse(modelId=MODEL_ID, messages=MSG, **kw)
""".replace("MODEL_ID", repr(HAIKU))
)


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(sandbox_env, SETUP)


def events(sb: Any, ids: set[str]) -> list[dict[str, Any]]:
    return [e for e in sb.events() if e["provider_response_id"] in ids]


def test_proxied_converse_gets_payi_cost_and_is_never_ingested(shell: InteractiveShell, sandbox_env: Any) -> None:
    before = len(sandbox_env.emulator.state.requests)
    ok(shell, "%%payi --proxy --use-case tips --user ana\nr = converse()\n")
    r = shell.user_ns["r"]
    row = rows().iloc[0]
    usage = r["usage"]
    assert row["mode"] == "proxy" and row.status == "proxied" and row.cost_source == "payi"
    assert (row.input_tokens, row.output_tokens) == (
        usage["inputTokens"],
        usage["outputTokens"],
    )
    # Claude 3.5 Haiku on Bedrock: $0.80 / $4 per million input / output tokens
    assert row.payi_cost_usd == pytest.approx(usage["inputTokens"] * 0.8e-6 + usage["outputTokens"] * 4e-6)
    assert row.provider_response_id == r["ResponseMetadata"]["RequestId"]
    assert pn.last_result()["cost"]["total"]["base"] == pytest.approx(row.payi_cost_usd)
    assert pn.flush(15).sent == 0, "a proxied call is never ingested"
    (event,) = events(sandbox_env, {row.provider_response_id})
    assert event["source"] == "proxy" and event["category"] == "system.aws.bedrock" and event["resource"] == HAIKU
    assert event["context"]["use_case_name"] == "tips" and event["context"]["user_id"] == "ana"
    received = list(sandbox_env.emulator.state.requests)[before:]
    assert [rec.path for rec in received] == [f"/model/{HAIKU}/converse"], "forwarded once, to the provider's path"


def test_streams_and_anthropic_bedrock_through_the_proxy(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(
        shell,
        "%%payi --proxy\n"
        "cs = list(rt.converse_stream(modelId='amazon.nova-lite-v1:0', messages=MSG)['stream'])\n"
        "body = json.dumps({'anthropic_version': 'bedrock-2023-05-31', 'max_tokens': 80, 'messages': [{'role': 'user', 'content': 'Hi'}]})\n"
        f"inv = [json.loads(e['chunk']['bytes']) for e in rt.invoke_model_with_response_stream(modelId={HAIKU!r}, body=body)['body']]\n"
        f"m = ab.messages.create(model={HAIKU!r}, max_tokens=80, messages=[{{'role': 'user', 'content': 'Hi'}}])\n"
        f"with ab.messages.stream(model={HAIKU!r}, max_tokens=80, messages=[{{'role': 'user', 'content': 'Hi'}}]) as s:\n"
        "    sm = s.get_final_message()\n",
    )
    ns = shell.user_ns
    df = rows()
    assert list(df.status) == ["proxied"] * 4 and bool((df.payi_cost_usd > 0).all())
    assert list(df.operation) == [
        "converse-stream",
        "invoke-with-response-stream",
        "invoke",
        "invoke-with-response-stream",
    ]
    assert df.iloc[0].output_tokens == ns["cs"][-1]["metadata"]["usage"]["outputTokens"]
    assert "xproxy_result" in ns["inv"][-1], "the stamped chunk still parses (fresh CRCs)"
    assert df.iloc[1].output_tokens == ns["inv"][-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
    assert df.iloc[2].output_tokens == ns["m"].usage.output_tokens
    assert df.iloc[3].output_tokens == ns["sm"].usage.output_tokens
    assert pn.flush(15).sent == 0
    assert {e["source"] for e in events(sandbox_env, set(df.provider_response_id))} == {"proxy"}
    assert len(events(sandbox_env, set(df.provider_response_id))) == 4


def test_a_block_limit_refuses_a_proxied_bedrock_call(shell: InteractiveShell, sandbox_env: Any) -> None:
    limit = pn.limits.create("bedrock-block", 0.0001, type="block")
    outcomes = []
    for _ in range(8):
        with capture_output() as out:
            result = run(shell, f"%%payi --proxy --limit {limit.limit_id}\nconverse()\n")
        outcomes.append(
            (
                type(result.error_in_exec).__name__ if result.error_in_exec else "ok",
                out.stdout,
            )
        )
        if result.error_in_exec:
            break
    kinds = [k for k, _ in outcomes]
    assert kinds[-1] == "ClientError" and set(kinds[:-1]) == {"ok"} and len(kinds) > 1, kinds
    assert "bedrock-block" in outcomes[-1][1] and "blocked" in outcomes[-1][1]
    df = rows()
    blocked = df[df.status == "blocked"]
    assert len(blocked) == 1 and blocked.iloc[0].limit_states == {limit.limit_id: "blocked"}
    before = len(sandbox_env.emulator.state.requests)
    stream = run(
        shell,
        f"%%payi --proxy --limit {limit.limit_id}\nlist(rt.converse_stream(modelId={HAIKU!r}, messages=MSG)['stream'])\n",
    )
    assert type(stream.error_in_exec).__name__ == "ClientError", "a blocked stream fails before any event"
    assert len(sandbox_env.emulator.state.requests) == before, "a blocked call never reaches the provider"
    assert rows().iloc[-1].status == "blocked"


def test_exactly_one_pay_i_event_per_bedrock_call_in_any_mix(shell: InteractiveShell, sandbox_env: Any) -> None:
    """Pay-i's SDK can proxy *and* ingest a Bedrock call under a per-scope proxy setting; we never do."""
    ok(
        shell,
        "manual = bedrock(pn.bedrock_url())  # pointed at the proxy by hand\n"
        "def _payi_headers(request, **_):\n"
        "    for name, value in {**pn.proxy_headers(user_id='manual'), 'xProxy-Provider-BaseUri': PROVIDER_URL}.items():\n"
        "        request.headers[name] = value\n"
        "manual.meta.events.register('before-sign.bedrock-runtime.*', _payi_headers)\n"
        "ids = []\n"
        "def rid(reply):\n"
        "    ids.append(reply['ResponseMetadata']['RequestId'])\n",
    )
    ok(
        shell,
        "%%payi --use-case mix\n"
        "rid(converse())\n"
        "with pn.track(proxy=True):\n"
        "    rid(converse())\n"
        "    late = bedrock()  # created inside a proxy scope\n"
        "    with pn.track(proxy=False, user_id='inner'):\n"
        "        rid(converse(late))\n"
        "    rid(converse(manual))\n"
        "rid(converse(manual))\n"
        "rid(converse(late))\n",
    )
    ok(shell, "%%payi --proxy\nrid(converse(late))\nrid(converse(manual))\n")
    pn.flush(15)
    ids = shell.user_ns["ids"]
    df = rows()
    assert len(df) == 8 and set(ids) == set(df.provider_response_id)
    stored = events(sandbox_env, set(ids))
    assert len(stored) == 8, "one Pay-i event per call, none twice"
    source = {e["provider_response_id"]: e["source"] for e in stored}
    assert [df.set_index("provider_response_id").loc[i, "mode"] for i in ids] == [
        "telemetry", "proxy", "telemetry", "proxy", "proxy", "telemetry", "proxy", "proxy",
    ]  # fmt: skip
    for i, mode in zip(df.provider_response_id, df["mode"]):
        assert (source[i] == "proxy") == (mode == "proxy"), (i, mode, source[i])
    manual_rows = df[df.user_id == "manual"]
    assert len(manual_rows) == 3 and set(manual_rows.status) == {"proxied"}


def test_mantle_has_no_proxy_route_so_it_goes_direct_and_says_so(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(
        shell,
        "from anthropic import AnthropicBedrockMantle\n"
        "mantle = AnthropicBedrockMantle(api_key='key-SECRET', base_url=PROVIDER_URL + '/bedrock/anthropic', max_retries=0)\n",
    )
    with capture_output() as printed:
        ok(
            shell,
            "%%payi --proxy\nmm = mantle.messages.create(model='anthropic.claude-3-5-haiku-20241022-v1:0', max_tokens=40, messages=[{'role': 'user', 'content': 'Hi'}])\n",
        )
    row = rows().iloc[0]
    assert row["mode"] == "telemetry" and row.output_tokens == shell.user_ns["mm"].usage.output_tokens
    assert "no proxy route for these bedrock calls" in printed.stdout and "Block limits cannot apply" in printed.stdout
    assert pn.flush(15).sent == 1


def test_the_rewrite_keeps_the_sigv4_signature_valid_for_the_provider() -> None:
    """Rewritten after signing: the signature Pay-i forwards is the one for the provider's host and path."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from payi_notebook.capture import ProxyTarget, RouteTable
    from payi_notebook.capture.botocore_hook import rewrite_prepared
    from payi_notebook.context import Context
    from payi_notebook.secret import Secret

    provider = (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    )
    creds = Credentials("AKIAEXAMPLE", "secret")
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()

    def signed(url: str, date: str | None = None) -> Any:
        request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
        if date:
            request.context["timestamp"] = date
        SigV4Auth(creds, "bedrock", "us-east-1").add_auth(request)
        return request

    original = signed(provider)
    prepared = original.prepare()
    route = RouteTable({}, "http://127.0.0.1:9").match(
        "https",
        "bedrock-runtime.us-east-1.amazonaws.com",
        None,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
    )
    rewrite_prepared(prepared, route, ProxyTarget("http://127.0.0.1:9", Secret("pk")), Context(user_id="u"))
    assert prepared.url == (
        "http://127.0.0.1:9/api/v1/proxy/aws.bedrock/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    )
    assert prepared.headers["xProxy-Provider-BaseUri"] == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert prepared.headers["xProxy-api-key"] == "pk" and prepared.headers["xProxy-User-ID"] == "u"
    # Pay-i forwards to BaseUri + the path after the proxy prefix: the same request botocore signed
    forwarded = prepared.headers["xProxy-Provider-BaseUri"] + prepared.url.split("/api/v1/proxy/aws.bedrock", 1)[1]
    again = signed(forwarded, original.headers["X-Amz-Date"])
    assert again.headers["Authorization"] == prepared.headers["Authorization"]
