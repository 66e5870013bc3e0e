"""Which calls get a tracked cell's context, in a real IPython shell with the real SDKs against
the emulator and the sandbox: calls from plain threads and other executors started in the cell,
calls through a client the user aimed at the Pay-i proxy, and streams that never sent usage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn

from support.shells import loaded_shell, ok, rows

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(
        sandbox_env,
        "import threading, asyncio\n"
        "from openai import OpenAI, AsyncOpenAI\n"
        "from anthropic import Anthropic\n"
        "oa = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-test-SECRET', max_retries=0)\n"
        "an = Anthropic(base_url=PROVIDER_URL, api_key='sk-ant-SECRET', max_retries=0)\n"
        "MSG = [{'role': 'user', 'content': 'Summarise the quarterly report in two lines.'}]\n"
        "def chat():\n"
        "    return oa.chat.completions.create(model='gpt-4o-mini', messages=MSG).id\n",
    )


def test_plain_threads_started_in_a_cell_keep_its_context(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi --use-case threads --user tia\n"
        "ids = []\n"
        "workers = [threading.Thread(target=lambda: ids.extend(chat() for _ in range(2))) for _ in range(8)]\n"
        "for w in workers: w.start()\n"
        "for w in workers: w.join()\n"
        "class Worker(threading.Thread):\n"
        "    def run(self):\n"
        "        ids.append(chat())\n"
        "sub = Worker(); sub.start(); sub.join()\n",
    )
    df = rows()
    assert len(shell.user_ns["ids"]) == 17
    assert sorted(df.provider_response_id) == sorted(shell.user_ns["ids"]), "every thread's call is a row"
    assert set(df.use_case_name) == {"threads"} and set(df.user_id) == {"tia"}
    assert set(df.execution_count) == {shell.execution_count - 1}


def test_executors_and_anyio_threads_keep_the_cell_context(shell: InteractiveShell) -> None:
    ok(
        shell,
        "%%payi --use-case offload\n"
        "import anyio.to_thread\n"
        "loop = asyncio.get_running_loop()\n"
        "a = await loop.run_in_executor(None, chat)\n"
        "b = await asyncio.to_thread(chat)\n"
        "c = await anyio.to_thread.run_sync(chat)\n",
    )
    df = rows()
    assert sorted(df.provider_response_id) == sorted(shell.user_ns[k] for k in "abc")
    assert set(df.use_case_name) == {"offload"}


def test_threads_started_outside_a_cell_and_pool_workers_stay_untracked(shell: InteractiveShell) -> None:
    ok(
        shell,
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(1)\n"
        "outside = threading.Thread(target=chat); outside.start(); outside.join()\n",
    )
    ok(shell, "%%payi --use-case once\nfirst = pool.submit(chat).result()\n")  # the worker thread starts here
    ok(
        shell,
        "later = pool.submit(chat).result()\n",  # the same worker, now outside any tracked cell
    )
    df = rows()
    assert list(df.provider_response_id) == [shell.user_ns["first"]], "only the tracked submit is a row"
    shell.user_ns["pool"].shutdown()



def test_a_client_aimed_at_the_proxy_by_hand_gets_the_cells_context(shell: InteractiveShell, sandbox_env: Any) -> None:
    own_limit = pn.limits.create("own-limit", 100.0).limit_id
    shell.user_ns["OWN_LIMIT"] = own_limit
    ok(
        shell,
        "import payi_notebook as pn\n"
        "base = {'xProxy-Provider-BaseUri': PROVIDER_URL}\n"
        "plain = OpenAI(base_url=pn.openai_url(), api_key='sk-test-SECRET', max_retries=0,\n"
        "               default_headers={**pn.proxy_headers(), **base})\n"
        "mine = OpenAI(base_url=pn.openai_url(), api_key='sk-test-SECRET', max_retries=0,\n"
        "              default_headers={**pn.proxy_headers(user_id='own', limit_ids=[OWN_LIMIT]), **base})\n"
        "def via(client, **kw):\n"
        "    return client.chat.completions.create(model='gpt-4o-mini', messages=MSG, **kw).id\n",
    )
    ok(
        shell,
        "%%payi --use-case manual --user ana --account acme --prop team=ml\n"
        "a = via(plain)\n"
        "b = via(mine)\n"
        "c = via(plain, extra_headers={'xProxy-UseCase-Name': 'other', 'xProxy-Account-Name': ''})\n",
    )
    pn.flush(15)
    ns = shell.user_ns
    df = rows().set_index("provider_response_id")
    assert set(df["mode"]) == {"proxy"} and set(df.status) == {"proxied"} and len(df) == 3
    expected = {
        ns["a"]: ("manual", "ana", "acme", [], {"team": "ml"}),
        ns["b"]: ("manual", "own", "acme", [own_limit], {"team": "ml"}),  # the client's own headers win
        ns["c"]: ("other", "ana", None, [], {"team": "ml"}),  # per call too; an empty header clears
    }
    at_payi = {e["provider_response_id"]: e for e in sandbox_env.events() if e["provider_response_id"] in expected}
    assert len(at_payi) == 3 and {e["source"] for e in at_payi.values()} == {"proxy"}
    for rid, (use_case, user, account, limits, props) in expected.items():
        row = df.loc[rid]
        assert tuple(_value(row[c]) for c in ("use_case_name", "user_id", "account_name")) == (use_case, user, account)
        assert list(row.limit_ids) == limits and row.properties == props
        sent = at_payi[rid]["context"]
        assert (sent.get("use_case_name"), sent.get("user_id"), sent.get("account_name")) == (use_case, user, account)
        assert sent.get("limit_ids", []) == limits and sent.get("properties") == props
    assert at_payi[ns["a"]]["context"]["use_case_id"] == df.loc[ns["a"]].use_case_id
    assert _value(df.loc[ns["c"]].use_case_id) is None, "a use case named by the caller does not take the cell's id"
    assert at_payi[ns["c"]]["context"].get("use_case_id") != df.loc[ns["a"]].use_case_id


def _value(cell: Any) -> Any:
    """A ledger cell with pandas' missing markers as None."""
    return None if not isinstance(cell, (list, dict)) and pd.isna(cell) else cell


LONG_MSG = [
    {"role": "system", "content": "You are a careful analyst. " * 20},
    {"role": "user", "content": "Summarise the quarterly report in two lines, with the main risk first. " * 10},
]


def test_openai_streams_without_usage_get_an_estimated_input(shell: InteractiveShell) -> None:
    shell.user_ns["LONG"] = LONG_MSG
    ok(
        shell,
        "%%payi --use-case cut\n"
        "import gc, openai\n"
        "full = oa.chat.completions.create(model='gpt-4o-mini', messages=LONG)\n"
        "s = oa.chat.completions.create(model='gpt-4o-mini', messages=LONG, stream=True)\n"
        "next(iter(s)); s.close()\n"  # closed early
        "s = oa.chat.completions.create(model='gpt-4o-mini', messages=LONG, stream=True)\n"
        "next(iter(s)); del s; gc.collect()\n"  # abandoned
        "try:\n"
        "    list(oa.chat.completions.create(model='gpt-4o-mini', messages=LONG, stream=True,\n"
        "                                    extra_headers={'X-Emulator-Fault': 'cut=3'}))\n"
        "except openai.APIConnectionError:\n"
        "    pass\n"  # cut by the server
        "events = oa.responses.create(model='gpt-4o-mini', input=LONG[1]['content'], instructions=LONG[0]['content'], stream=True)\n"
        "next(iter(events)); events.close()\n"
        "n = an.messages.create(model='claude-haiku-4-5', max_tokens=200, messages=LONG[1:], stream=True)\n"
        "next(iter(n)); next(iter(n)); n.close()\n",  # Anthropic knew its input from message_start
    )
    df = rows()
    exact = shell.user_ns["full"].usage.prompt_tokens
    assert len(df) == 6 and not df.iloc[0].partial and not df.iloc[0].input_tokens_estimated
    for row in df.iloc[1:5].itertuples():
        assert row.partial and row.input_tokens_estimated, row
        assert exact / 2 <= row.input_tokens <= exact * 2, (row.input_tokens, exact)
        assert "input tokens estimated" in row.error and row.est_cost_usd > 0
        assert row.units["text"]["input"] == row.input_tokens
    anthropic = df.iloc[5]
    assert anthropic.partial and anthropic.input_tokens > 0 and not anthropic.input_tokens_estimated
    report = pn.flush(15)
    assert report.failed == 0 and report.pending == 0
