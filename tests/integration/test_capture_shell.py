"""%%payi in a real IPython shell: the real openai/anthropic SDKs against the emulator,
telemetry into the sandbox, ledger rows checked against what the SDK parsed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn
from payi_notebook.session import get_session

from support.shells import loaded_shell, ok, rows, run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(
        sandbox_env,
        "from openai import OpenAI, AsyncOpenAI\n"
        "from anthropic import Anthropic, AsyncAnthropic\n"
        "oa = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-test-SECRET', max_retries=0)\n"
        "aoa = AsyncOpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-test-SECRET', max_retries=0)\n"
        "an = Anthropic(base_url=PROVIDER_URL, api_key='sk-ant-SECRET', max_retries=0)\n"
        "aan = AsyncAnthropic(base_url=PROVIDER_URL, api_key='sk-ant-SECRET', max_retries=0)\n"
        "MSG = [{'role': 'user', 'content': 'Summarise the quarterly report in two lines.'}]\n",
    )


def test_sync_chat_is_captured_with_exact_usage_and_context(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(
        shell,
        "%%payi --use-case summarize --user ana --account acme --step draft --prop team=ml --prop run=7\n"
        "r = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n",
    )
    r = shell.user_ns["r"]
    df = rows()
    assert len(df) == 1
    row = df.iloc[0]
    assert row.provider == "openai" and row.operation == "chat" and row.category == "system.openai"
    assert row.resource == "gpt-4o-mini" and row.provider_response_id == r.id
    assert row.input_tokens == r.usage.prompt_tokens and row.output_tokens == r.usage.completion_tokens
    assert row.units == {"text": {"input": r.usage.prompt_tokens, "output": r.usage.completion_tokens}}
    assert (row.use_case_name, row.user_id, row.account_name, row.use_case_step) == ("summarize", "ana", "acme", "draft")
    assert row.properties == {"team": "ml", "run": "7"}
    assert row["mode"] == "telemetry" and not row.streaming and row.http_status == 200
    assert row.execution_count == shell.execution_count - 1
    assert row.latency_ms > 0 and row.est_cost_usd > 0

    report = pn.flush(15)
    assert report.pending == 0 and report.failed == 0
    row = rows().iloc[0]
    assert row.status == "sent" and row.cost_source == "payi"
    assert row.payi_cost_usd == pytest.approx(row.est_cost_usd)
    stored = [e for e in sandbox_env.events() if e["provider_response_id"] == r.id]
    assert len(stored) == 1
    assert stored[0]["context"]["use_case_name"] == "summarize" and stored[0]["context"]["user_id"] == "ana"


def test_calls_outside_a_tracked_cell_pass_untouched(shell: InteractiveShell) -> None:
    ok(shell, "r = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)")
    assert shell.user_ns["r"].usage.prompt_tokens > 0
    assert len(rows()) == 0


def test_top_level_await_and_tasks_keep_the_cell_scope(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi --use-case fanout\n"
        "import asyncio\n"
        "results = await asyncio.gather(*(aoa.chat.completions.create(model='gpt-4o-mini', messages=MSG) for _ in range(3)))\n",
    )
    df = rows()
    assert len(df) == 3
    assert set(df.provider_response_id) == {r.id for r in shell.user_ns["results"]}
    assert set(df.use_case_name) == {"fanout"}


def test_thread_pool_workers_keep_the_cell_scope(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi --use-case threads --user bo\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    rs = list(pool.map(lambda _: oa.embeddings.create(model='text-embedding-3-small', input='hi there'), range(4)))\n",
    )
    df = rows()
    assert len(df) == 4
    assert set(df.operation) == {"embeddings"} and set(df.user_id) == {"bo"}
    assert all(u == {"text": {"input": r.usage.prompt_tokens, "output": 0}} for u, r in zip(df.units, shell.user_ns["rs"]))


def test_openai_stream_without_include_usage_hides_the_usage_chunk(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(
        shell,
        "%%payi\n"
        "chunks = list(oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, stream=True))\n",
    )
    chunks = shell.user_ns["chunks"]
    assert all(c.choices for c in chunks), "the caller must not see the usage chunk it did not ask for"
    assert all(c.usage is None for c in chunks)
    row = rows().iloc[0]
    assert row.streaming and not row.partial and row.output_tokens > 0 and row.input_tokens > 0
    assert row.ttft_ms is not None and 0 < row.ttft_ms <= row.latency_ms
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text, "the stream's content reached the caller"


def test_openai_stream_with_include_usage_keeps_the_usage_chunk(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi\n"
        "chunks = list(oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, stream=True,"
        " stream_options={'include_usage': True}))\n",
    )
    last = shell.user_ns["chunks"][-1]
    assert last.usage is not None and last.choices == []
    row = rows().iloc[0]
    assert row.input_tokens == last.usage.prompt_tokens and row.output_tokens == last.usage.completion_tokens


def test_anthropic_sync_async_and_stream(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi --use-case claude\n"
        "m1 = an.messages.create(model='claude-haiku-4-5', max_tokens=64, messages=MSG)\n"
        "m2 = await aan.messages.create(model='claude-haiku-4-5', max_tokens=64, messages=MSG)\n"
        "with an.messages.stream(model='claude-haiku-4-5', max_tokens=64, messages=MSG) as s:\n"
        "    m3 = s.get_final_message()\n",
    )
    df = rows()
    assert list(df.provider) == ["anthropic"] * 3
    for row, name in zip(df.itertuples(), ("m1", "m2", "m3")):
        message = shell.user_ns[name]
        assert row.provider_response_id == message.id
        assert row.input_tokens == message.usage.input_tokens and row.output_tokens == message.usage.output_tokens
        assert row.category == "system.anthropic" and row.resource == "claude-haiku-4-5"
    assert list(df.streaming) == [False, False, True]


def test_responses_api_json_and_stream(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi\n"
        "r1 = oa.responses.create(model='gpt-4o-mini', input='Name three colours.')\n"
        "events = list(oa.responses.create(model='gpt-4o-mini', input='Name three colours.', stream=True))\n",
    )
    df = rows()
    r1 = shell.user_ns["r1"]
    done = [e for e in shell.user_ns["events"] if e.type == "response.completed"][0]
    assert list(df.operation) == ["responses", "responses"]
    assert df.iloc[0].input_tokens == r1.usage.input_tokens and df.iloc[0].output_tokens == r1.usage.output_tokens
    assert df.iloc[1].provider_response_id == done.response.id
    assert df.iloc[1].output_tokens == done.response.usage.output_tokens


def test_provider_error_is_recorded_and_still_raised(shell: InteractiveShell) -> None:
    result = run(shell, "%%payi\noa.chat.completions.create(model='gpt-4o-mini@429', messages=MSG)\n")
    assert type(result.error_in_exec).__name__ == "RateLimitError"
    row = rows().iloc[0]
    assert row.http_status == 429 and row.error and row.input_tokens == 0


def test_stream_closed_early_is_recorded_as_partial(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi\n"
        "stream = an.messages.create(model='claude-haiku-4-5', max_tokens=200, messages=MSG, stream=True)\n"
        "for i, event in enumerate(stream):\n"
        "    if i == 4:\n"
        "        break\n"
        "stream.close()\n",
    )
    row = rows().iloc[0]
    assert row.partial and row.streaming
    assert row.input_tokens > 0, "message_start's input usage is kept"


def test_invalid_options_stop_the_cell_before_it_runs(shell: InteractiveShell) -> None:
    for options in ("--use-case 'has space'", "--use-case-version two --use-case x", "--prop novalue", "--bogus"):
        shell.user_ns.pop("ran", None)
        result = run(shell, f"%%payi {options}\nran = True\n")
        assert type(result.error_in_exec).__name__ == "UsageError", options
        assert "ran" not in shell.user_ns, f"the body ran despite {options}"
    assert len(rows()) == 0


def test_on_off_mode_and_provider_subcommands(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(shell, "%payi on --user carol")
    ok(shell, "r = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)")
    ok(shell, "%payi off")
    ok(shell, "r = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)")
    df = rows()
    assert len(df) == 1 and df.iloc[0].user_id == "carol"
    assert type(run(shell, "%payi mode sideways").error_in_exec).__name__ == "UsageError"
    assert type(run(shell, "%payi frobnicate").error_in_exec).__name__ == "UsageError"
    assert type(run(shell, "%payi provider add cohere http://x").error_in_exec).__name__ == "UsageError"
    ok(shell, "%payi provider add openai http://127.0.0.1:9/v1")
    assert "http://127.0.0.1:9/v1" in get_session().provider_table()["openai"]


def test_status_flush_df_and_reset(shell: InteractiveShell) -> None:
    ok(shell, "%%payi\nr = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n")
    flushed = ok(shell, "%payi flush 15")
    assert flushed.sent >= 1 and flushed.pending == 0
    status = repr(ok(shell, "%payi status"))
    assert "sandbox" in status and "1 sent" in status.replace(",", "")
    assert len(ok(shell, "%payi df")) == 1
    ok(shell, "%payi reset")
    assert len(rows()) == 0


def test_credentials_never_reach_the_ledger_ingest_or_logs(
    shell: InteractiveShell, sandbox_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ok(shell, "%%payi\nr = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n")
    pn.flush(15)
    blob = rows().to_json(date_format="iso") + repr(rows()) + json.dumps(sandbox_env.events(), default=str) + caplog.text
    blob += repr(get_session().settings) + repr(get_session().endpoint) + repr(pn.status())
    for secret in ("sk-test-SECRET", sandbox_env.api_key):
        assert secret not in blob


def test_a_capture_problem_never_breaks_the_call(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi\n"
        "import httpx2\n"
        "SSE = (b'data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",'\n"
        "       b'\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\\n\\ndata: [DONE]\\n\\n')\n"
        "def odd_gateway(request):\n"
        "    headers = {'content-type': 'text/event-stream', 'content-encoding': 'x-mystery'}\n"
        "    return httpx2.Response(200, stream=httpx2.ByteStream(SSE), headers=headers)\n"
        "odd = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='k', http_client=httpx2.Client(transport=httpx2.MockTransport(odd_gateway)))\n"
        "got = [c.choices[0].delta.content for c in odd.chat.completions.create(model='gpt-4o-mini', messages=MSG, stream=True)]\n",
    )
    assert shell.user_ns["got"] == ["hi"], "the caller's stream is intact"
    assert len(rows()) == 1
    problems = " ".join(p.message for p in get_session().problems.recent(100))
    assert "x-mystery" in problems


def test_load_twice_installs_once_and_unload_restores(shell: InteractiveShell) -> None:
    import httpx
    import httpx2

    hooked = httpx2.Client.send
    ok(shell, "%load_ext payi_notebook")
    assert httpx2.Client.send is hooked and hasattr(hooked, "__payi_original__")
    ok(shell, "%unload_ext payi_notebook")
    assert not hasattr(httpx2.Client.send, "__payi_original__")
    assert not hasattr(httpx.AsyncClient.send, "__payi_original__")
    ok(shell, "%load_ext payi_notebook")
    get_session().start()  # the session (and capture) starts in the background: wait for it
    assert hasattr(httpx2.Client.send, "__payi_original__")


def test_the_cell_magic_called_directly_tracks_its_body(shell: InteractiveShell) -> None:
    ok(shell, "get_ipython().run_cell_magic('payi', '--use-case direct --user dee', 'r = oa.chat.completions.create(model=\\'gpt-4o-mini\\', messages=MSG)')")
    df = rows()
    assert len(df) == 1 and (df.iloc[0].use_case_name, df.iloc[0].user_id) == ("direct", "dee")
    assert df.iloc[0].provider_response_id == shell.user_ns["r"].id


def test_a_stream_dropped_unread_is_still_recorded(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi\n"
        "import gc\n"
        "s = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, stream=True)\n"
        "first = next(iter(s))\n"
        "del s\n"
        "gc.collect()\n",
    )
    df = rows()
    assert len(df) == 1 and df.iloc[0].partial and df.iloc[0].provider_response_id == shell.user_ns["first"].id
