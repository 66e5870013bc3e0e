"""Azure OpenAI, Foundry, Gemini API and Vertex through ``%%payi`` in a real IPython shell.

The real SDKs (openai's Azure clients, anthropic's Foundry and Vertex clients, google-genai
sync, over httpx2 and over aiohttp) call the emulator; telemetry goes to the sandbox, proxy
mode through its proxy routes. Each row is checked against the usage the SDK itself parsed,
units and costs against values computed here by hand, and the sandbox against exactly one
record per call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn

from support.shells import loaded_shell, ok, rows

pytestmark = pytest.mark.timeout(180)

SETUP = """
import openai, anthropic
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials
AZ = dict(azure_endpoint=PROVIDER_URL, api_key='az-SECRET', api_version='2024-10-21', max_retries=0)
az, aaz = openai.AzureOpenAI(**AZ), openai.AsyncAzureOpenAI(**AZ)
v1 = openai.OpenAI(base_url=PROVIDER_URL + '/openai/v1/', api_key='az-SECRET', max_retries=0)
FD = dict(api_key='fd-SECRET', base_url=PROVIDER_URL + '/anthropic', max_retries=0)
fd, afd = anthropic.AnthropicFoundry(**FD), anthropic.AsyncAnthropicFoundry(**FD)
CV = dict(region='us-east5', project_id='proj', access_token='cv-SECRET', base_url=PROVIDER_URL + '/v1', max_retries=0)
cv, acv = anthropic.AnthropicVertex(**CV), anthropic.AsyncAnthropicVertex(**CV)
gm = genai.Client(api_key='goog-SECRET', http_options=types.HttpOptions(base_url=PROVIDER_URL))
vx = genai.Client(vertexai=True, project='proj', location='us-central1', credentials=Credentials('vx-SECRET'),
                  http_options=types.HttpOptions(base_url=PROVIDER_URL))
MSG = [{'role': 'user', 'content': 'Summarise the quarterly report in two lines.'}]
TEXT = 'Summarise the quarterly report in two lines.'
def get_weather(city: str) -> str:
    '''The weather in a city.'''
    return 'sunny in ' + city
"""

# (case, code that leaves the SDK-parsed usage in `u` and the SDK's model in `m`, provider, operation, streaming)
CASES = {
    "azure-chat": (
        "r = az.chat.completions.create(model='my-deploy', messages=MSG); u, m = r.usage.model_dump(), r.model",
        "azure_openai", "chat", False,
    ),
    "azure-chat-async-stream": (
        "cs = [c async for c in await aaz.chat.completions.create(model='my-deploy', messages=MSG, stream=True,"
        " stream_options={'include_usage': True})]\nu, m = cs[-1].usage.model_dump(), cs[0].model",
        "azure_openai", "chat", True,
    ),
    "azure-embeddings": (
        "r = az.embeddings.create(model='my-embed', input=TEXT); u, m = r.usage.model_dump(), r.model",
        "azure_openai", "embeddings", False,
    ),
    "azure-responses": (
        "r = az.responses.create(model='my-deploy', input=TEXT); u, m = r.usage.model_dump(), r.model",
        "azure_openai", "responses", False,
    ),
    "azure-v1-chat": (
        "r = v1.chat.completions.create(model='gpt-4o', messages=MSG); u, m = r.usage.model_dump(), r.model",
        "azure_openai", "chat", False,
    ),
    "foundry": (
        "r = fd.messages.create(model='claude-sonnet-4-5', max_tokens=64, messages=MSG); u, m = r.usage.model_dump(), r.model",
        "azure_anthropic", "messages", False,
    ),
    "foundry-async-stream": (
        "async with afd.messages.stream(model='claude-sonnet-4-5', max_tokens=64, messages=MSG) as s:\n"
        "    r = await s.get_final_message()\nu, m = r.usage.model_dump(), r.model",
        "azure_anthropic", "messages", True,
    ),
    "gemini": (
        "r = gm.models.generate_content(model='gemini-2.5-flash', contents=TEXT)\n"
        "u, m = r.usage_metadata.model_dump(), r.model_version",
        "google", "generate", False,
    ),
    "gemini-stream": (
        "cs = list(gm.models.generate_content_stream(model='gemini-2.5-flash', contents=TEXT))\n"
        "u, m = cs[-1].usage_metadata.model_dump(), cs[-1].model_version",
        "google", "generate", True,
    ),
    "gemini-async-aiohttp": (
        "r = await gm.aio.models.generate_content(model='gemini-2.5-flash', contents=TEXT)\n"
        "u, m = r.usage_metadata.model_dump(), r.model_version",
        "google", "generate", False,
    ),
    "gemini-async-stream-aiohttp": (
        "cs = [c async for c in await gm.aio.models.generate_content_stream(model='gemini-2.5-flash', contents=TEXT)]\n"
        "u, m = cs[-1].usage_metadata.model_dump(), cs[-1].model_version",
        "google", "generate", True,
    ),
    "vertex-gemini": (
        "r = vx.models.generate_content(model='gemini-2.5-flash', contents=TEXT)\n"
        "u, m = r.usage_metadata.model_dump(), r.model_version",
        "vertex", "generate", False,
    ),
    "vertex-gemini-async-stream": (
        "cs = [c async for c in await vx.aio.models.generate_content_stream(model='gemini-2.5-flash', contents=TEXT)]\n"
        "u, m = cs[-1].usage_metadata.model_dump(), cs[-1].model_version",
        "vertex", "generate", True,
    ),
    "vertex-claude": (
        "r = cv.messages.create(model='claude-sonnet-4-5@20250929', max_tokens=64, messages=MSG)\n"
        "u, m = r.usage.model_dump(), r.model",
        "vertex", "messages", False,
    ),
    "vertex-claude-async-stream": (
        "async with acv.messages.stream(model='claude-sonnet-4-5@20250929', max_tokens=64, messages=MSG) as s:\n"
        "    r = await s.get_final_message()\nu, m = r.usage.model_dump(), r.model",
        "vertex", "messages", True,
    ),
}  # fmt: skip

# Calls with no Pay-i proxy route: in proxy mode they go direct and are ingested.
NO_PROXY_ROUTE = {"azure-responses", "azure-v1-chat", "gemini", "gemini-stream", "gemini-async-aiohttp",
                  "gemini-async-stream-aiohttp"}  # fmt: skip
CATEGORY = {
    "azure_openai": "system.azureopenai",
    "azure_anthropic": "system.azure",
    "google": "system.google.vertex",
    "vertex": "system.google.vertex",
}
DEPLOYMENTS = {"azure-chat": "my-deploy", "azure-chat-async-stream": "my-deploy", "azure-embeddings": "my-embed"}
PRICES = {"system.azureopenai": "azure", "system.azure": "azure", "system.google.vertex": "google"}


def expected(case: str, u: dict[str, Any], m: str) -> tuple[str, dict[str, dict[str, int]], Usage]:
    """(resource, units, genai-prices usage), by hand from what the SDK parsed."""
    provider = CASES[case][1]
    if case.startswith("gemini") or case.startswith("vertex-gemini"):
        prompt, cached = u["prompt_token_count"], u.get("cached_content_token_count") or 0
        tool, thoughts = u.get("tool_use_prompt_token_count") or 0, u.get("thoughts_token_count") or 0
        out = u.get("candidates_token_count") or 0
        units = {"text": {"input": prompt + tool - cached, "output": out}}
        if cached:
            units["text_cache_read"] = {"input": cached}
        if thoughts:
            units["reasoning"] = {"output": thoughts}
        usage = Usage(input_tokens=prompt + tool, cache_read_tokens=cached, output_tokens=out + thoughts)
        return "google." + m, units, usage
    if CASES[case][2] == "messages":
        units = {"text": {"input": u["input_tokens"], "output": u["output_tokens"]}}
        usage = Usage(input_tokens=u["input_tokens"], output_tokens=u["output_tokens"])
        return ("anthropic." + m if provider == "vertex" else m), units, usage
    prompt = u.get("prompt_tokens", u.get("input_tokens", 0))
    completion = u.get("completion_tokens", u.get("output_tokens", 0)) or 0
    units = {"text": {"input": prompt, "output": completion}}
    return m, units, Usage(input_tokens=prompt, output_tokens=completion)


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(sandbox_env, SETUP)


@pytest.mark.parametrize("mode", ["telemetry", "proxy"])
@pytest.mark.parametrize("case", list(CASES))
def test_provider_call_is_captured_once_with_hand_computed_units_and_cost(
    shell: InteractiveShell, sandbox_env: Any, case: str, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, provider, operation, streaming = CASES[case]
    capsys.readouterr()
    ok(shell, f"%%payi --{mode} --use-case providers\n{code}\n")
    printed = capsys.readouterr().out
    u, m = shell.user_ns["u"], shell.user_ns["m"]
    resource, units, usage = expected(case, u, m)
    df = rows()
    assert len(df) == 1, df
    row = df.iloc[0]
    assert (row.provider, row.operation, row.streaming) == (provider, operation, streaming)
    assert row.category == CATEGORY[provider]
    assert row.resource == resource
    assert row.units == units
    assert (row.deployment if isinstance(row.deployment, str) else None) == DEPLOYMENTS.get(case)
    model = resource.removeprefix("google.").removeprefix("anthropic.")
    want = float(calc_price(usage, model, provider_id=PRICES[row.category]).total_price)
    assert row.est_cost_usd == pytest.approx(want, rel=1e-9)

    direct = mode == "telemetry" or case in NO_PROXY_ROUTE
    assert row["mode"] == ("telemetry" if direct else "proxy")
    if mode == "proxy" and case in NO_PROXY_ROUTE:
        assert printed.count("Block limits cannot apply") == 1, printed
    else:
        assert "Block limits cannot apply" not in printed
    report = pn.flush(20)
    assert report.pending == 0 and report.failed == 0
    row = rows().iloc[0]
    assert row.status == ("sent" if direct else "proxied")
    assert row.payi_cost_usd == pytest.approx(want, rel=1e-6)
    events = sandbox_env.events()
    stored = [e for e in events if e["request_id"] == row.payi_request_id]
    assert len(stored) == 1, stored
    if not row.provider_response_id.startswith("payi_"):  # never both proxied and ingested
        assert [e["request_id"] for e in events if e["provider_response_id"] == row.provider_response_id] == [stored[0]["request_id"]]
    assert stored[0]["source"] == ("ingest" if direct else "proxy")
    assert stored[0]["category"] == row.category and stored[0]["resource"] == resource
    assert stored[0]["units"] == units
    for secret in ("az-SECRET", "fd-SECRET", "cv-SECRET", "goog-SECRET", "vx-SECRET"):
        assert secret not in repr(sandbox_env.events()) and secret not in df.to_json(date_format="iso")


def test_automatic_function_calling_counts_every_round(shell: InteractiveShell, sandbox_env: Any) -> None:
    """Pay-i's SDK bills only the last round; every HTTP round is its own row here."""
    ok(
        shell,
        "%%payi --use-case afc\n"
        "r = gm.models.generate_content(model='gemini-2.5-flash', contents='Weather in Paris?',"
        " config=types.GenerateContentConfig(tools=[get_weather]))\n",
    )
    r = shell.user_ns["r"]
    df = rows()
    assert len(df) == 2  # the function call, then the answer
    assert len(r.automatic_function_calling_history) == 3  # the question, the call, the function's response
    assert df.input_tokens.iloc[1] > df.input_tokens.iloc[0]  # the second round resends the call and its result
    assert df.output_tokens.iloc[1] == r.usage_metadata.candidates_token_count + r.usage_metadata.thoughts_token_count
    assert pn.flush(20).failed == 0
    ids = set(rows().payi_request_id)
    stored = [e for e in sandbox_env.events() if e["request_id"] in ids]
    assert len(stored) == 2 and {e["resource"] for e in stored} == {"google.gemini-2.5-flash"}


def test_stream_continuation_hops_are_summed_not_doubled(shell: InteractiveShell) -> None:
    """google-genai merges hop usage into its chunks; each hop is one row with its own usage."""
    ok(
        shell,
        "%%payi\n"
        "cs = list(gm.models.generate_content_stream(model='gemini-2.5-flash@hops=3', contents=TEXT))\n",
    )
    merged = shell.user_ns["cs"][-1].usage_metadata
    df = rows()
    assert len(df) == 3 and set(df.operation) == {"generate"}
    assert df.input_tokens.sum() == merged.prompt_token_count  # three requests, each billed its prompt
    assert df.output_tokens.sum() == merged.candidates_token_count + (merged.thoughts_token_count or 0)
    assert not df.partial.any()


def test_tool_use_prompt_tokens_count_as_input(shell: InteractiveShell) -> None:
    """Pay-i's SDK drops toolUsePromptTokenCount; search results are billed as input."""
    ok(
        shell,
        "%%payi\n"
        "r = vx.models.generate_content(model='gemini-2.5-flash', contents=TEXT,"
        " config=types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())]))\n",
    )
    u = shell.user_ns["r"].usage_metadata
    assert u.tool_use_prompt_token_count
    row = rows().iloc[0]
    assert row.input_tokens == u.prompt_token_count + u.tool_use_prompt_token_count
    assert row.units["text"]["input"] == u.prompt_token_count + u.tool_use_prompt_token_count


def test_provider_add_takes_the_url_given_to_the_sdk(shell: InteractiveShell) -> None:
    """A second emulator URL (another host spelling) is captured once added under each new name."""
    url = shell.user_ns["PROVIDER_URL"].replace("127.0.0.1", "localhost")
    shell.user_ns["OTHER"] = url
    for name, given in (("azure_openai", url), ("azure_anthropic", url + "/anthropic"), ("google", url), ("vertex", url)):
        ok(shell, f"%payi provider add {name} {given}")
    ok(
        shell,
        "%%payi\n"
        "a = openai.AzureOpenAI(azure_endpoint=OTHER, api_key='k', api_version='2024-10-21')\n"
        "f = anthropic.AnthropicFoundry(api_key='k', base_url=OTHER + '/anthropic')\n"
        "g = genai.Client(api_key='k', http_options=types.HttpOptions(base_url=OTHER))\n"
        "a.chat.completions.create(model='d', messages=MSG)\n"
        "f.messages.create(model='claude-sonnet-4-5', max_tokens=8, messages=MSG)\n"
        "g.models.generate_content(model='gemini-2.5-flash', contents=TEXT)\n",
    )
    assert list(rows().provider) == ["azure_openai", "azure_anthropic", "google"]
    result = shell.run_cell("%payi provider add bedrockish http://x")
    assert not result.success and "azure_openai" in str(result.error_in_exec)
