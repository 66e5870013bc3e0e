"""LLM calls in Dask workers: a real kernel, a real ``LocalCluster(processes=True, n_workers=2)``,
the real openai and anthropic SDKs against the emulator, Pay-i's side checked at the sandbox.

One kernel and cluster serve the whole module (a cluster takes seconds to start); each test
runs its own cells and checks what reached the sandbox and the notebook's ledger.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from support.kernels import Kernel, kernel_env

pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(300)

SETUP = """
%load_ext payi_notebook
import os, signal, time, json
import dask, dask.bag as db, dask.dataframe as dd, pandas as pd
import payi_notebook as pn
from distributed import Client, LocalCluster
cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=4, dashboard_address=None)
client = Client(cluster)
pn.dask.instrument(client)
pn.dask.instrument(client)  # a second call changes nothing
URL = pn.emulator_url()

def ask(i, delay=0.0):
    from openai import OpenAI
    oa = OpenAI(base_url=URL + '/v1', api_key='sk-dask-SECRET', max_retries=0)
    headers = {'X-Emulator-Fault': f'delay={delay}'} if delay else None
    reply = oa.chat.completions.create(
        model='gpt-4o-mini', messages=[{'role': 'user', 'content': f'question {i}'}], extra_headers=headers
    )
    return reply.id

def claude(text):
    from anthropic import Anthropic
    an = Anthropic(base_url=URL, api_key='sk-ant-dask-SECRET', max_retries=0)
    return an.messages.create(model='claude-haiku-4-5', max_tokens=32, messages=[{'role': 'user', 'content': text}]).id

def rows():
    df = pn.ledger().df
    keep = ['event_id', 'provider', 'provider_response_id', 'use_case_name', 'use_case_step', 'user_id',
            'properties', 'cell_id', 'execution_count', 'worker', 'status', 'input_tokens', 'output_tokens',
            'cost_usd', 'xproxy_json']
    return json.loads(df[keep].to_json(orient='records'))
"""


@pytest.fixture(scope="module")
def kernel(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    data = tmp_path_factory.mktemp("dask-data")
    k = Kernel(kernel_env(sandbox, data), data)
    try:
        k.execute(SETUP, timeout=120)
        yield k
    finally:
        try:
            k.execute("client.close(); cluster.close()", timeout=60)
        except AssertionError:
            pass
        k.shutdown()


def _json(kernel: Kernel, expr: str) -> Any:
    return json.loads(kernel.execute(f"print(json.dumps({expr}))").strip().splitlines()[-1])


def _at_payi(sandbox: Any) -> Counter[str]:
    return Counter(e.get("provider_response_id") for e in sandbox.events())


def test_map_dataframe_bag_and_a_graph_built_before_the_cell(kernel: Kernel, sandbox: Any) -> None:
    kernel.execute("lazy = [dask.delayed(ask, pure=False)(1000 + i) for i in range(10)]  # built outside any scope")
    kernel.execute(
        "%%payi --use-case dask-map --user ana --prop team=ml\n"
        "ids_map = client.gather(client.map(ask, range(200), pure=False))",
        timeout=180,
    )
    kernel.execute(
        "%%payi --use-case dask-df --step score\n"
        "ddf = dd.from_pandas(pd.DataFrame({'text': [f'row {i}' for i in range(40)]}), npartitions=4)\n"
        "ids_df = ddf.text.apply(claude, meta=('text', object)).compute().tolist()",
        timeout=120,
    )
    kernel.execute("%%payi --use-case built-before\nids_before = list(dask.compute(*lazy))", timeout=60)
    kernel.execute(
        "%%payi --use-case dask-bag\n"
        "ids_bag = db.from_sequence(range(8), npartitions=2).map(lambda i: ask(3000 + i)).compute()",
        timeout=60,
    )
    kernel.execute("ids_untracked = client.gather(client.map(ask, range(2000, 2005), pure=False))", timeout=60)
    report = kernel.execute("print(pn.flush(60))", timeout=90)
    assert "258 sent (258 by 2 Dask workers)" in report, report

    ids = _json(kernel, "{'map': ids_map, 'df': ids_df, 'before': ids_before, 'bag': ids_bag, 'untracked': ids_untracked}")
    at_payi = _at_payi(sandbox)
    for name in ("map", "df", "before", "bag"):
        assert ids[name] and all(at_payi[i] == 1 for i in ids[name]), f"{name}: not at Pay-i exactly once"
    assert not any(at_payi[i] for i in ids["untracked"]), "calls in tasks outside any scope were captured"

    ledger = {r["provider_response_id"]: r for r in _json(kernel, "rows()")}
    expected = {"map": ("dask-map", "openai"), "df": ("dask-df", "anthropic"), "before": ("built-before", "openai"),
                "bag": ("dask-bag", "openai")}  # fmt: skip
    workers = set()
    for name, (use_case, provider) in expected.items():
        for response_id in ids[name]:
            row = ledger[response_id]
            assert row["use_case_name"] == use_case and row["provider"] == provider
            assert row["status"] == "sent" and row["cost_usd"] > 0 and row["input_tokens"] > 0
            assert row["worker"] and row["worker"].startswith("tcp://127.0.0.1:")
            assert row["execution_count"] is not None  # (no front end here, so no cell id)
            workers.add(row["worker"])
    assert len(workers) == 2, "both workers' calls came back"
    map_rows = [ledger[i] for i in ids["map"]]
    assert all(r["user_id"] == "ana" and r["properties"] == {"team": "ml"} for r in map_rows)
    assert len({r["execution_count"] for r in map_rows}) == 1
    assert {ledger[i]["use_case_step"] for i in ids["df"]} == {"score"}
    assert not any(i in ledger for i in ids["untracked"])

    events = {e["provider_response_id"]: e for e in sandbox.events()}
    sample = events[ids["map"][0]]
    assert sample["context"]["use_case_name"] == "dask-map" and sample["context"]["user_id"] == "ana"


def test_rows_reach_the_notebook_while_the_work_runs(kernel: Kernel) -> None:
    kernel.execute(
        "%%payi --use-case live\n"
        "futures = client.map(ask, range(4000, 4008), pure=False)\n"
        "client.gather(futures)\n"
        "t0 = time.monotonic()\n"
        "while len(pn.ledger().df.query(\"use_case_name == 'live'\")) < 8 and time.monotonic() - t0 < 10:\n"
        "    time.sleep(0.05)\n"
        "waited = time.monotonic() - t0",
        timeout=60,
    )
    waited = _json(kernel, "waited")
    assert waited < 3.0, f"rows took {waited:.2f} s to come back after the tasks finished"


def test_a_killed_worker_loses_nothing_and_doubles_nothing(kernel: Kernel, sandbox: Any) -> None:
    kernel.execute(
        "%%payi --use-case dask-kill\n"
        "pids = client.run(os.getpid)\n"
        "futures = client.map(ask, range(5000, 5060), [0.05] * 60, pure=False)\n"
        "time.sleep(1.0)\n"
        "os.kill(list(pids.values())[0], signal.SIGKILL)\n"
        "ids_kill = client.gather(futures)",
        timeout=180,
    )
    kernel.execute("time.sleep(3); pn.flush(60)", timeout=120)
    ids = _json(kernel, "ids_kill")
    at_payi = _at_payi(sandbox)
    assert len(ids) == 60 and all(at_payi[i] == 1 for i in ids), "a returned call is missing at Pay-i"
    rows = _json(kernel, "rows()")
    assert not any(r["xproxy_json"] and "duplicate_request" in r["xproxy_json"] for r in rows), "an event was re-sent"
    kill_rows = [r for r in rows if r["use_case_name"] == "dask-kill"]
    assert {r["provider_response_id"] for r in kill_rows} >= set(ids)


def test_proxy_mode_and_a_block_limit_refuse_worker_calls(kernel: Kernel, sandbox: Any) -> None:
    kernel.execute(
        "limit = pn.limits.create('dask-block', 0.00001, type='block')\n"
        "def guarded(i):\n"
        "    import openai\n"
        "    try:\n"
        "        return ask(6000 + i)\n"
        "    except openai.BadRequestError as exc:\n"
        "        return 'blocked:' + str(exc.status_code)\n"
        "first = None",
        timeout=60,
    )
    kernel.execute(
        "%%payi --proxy --use-case dask-proxy --limit {limit.limit_id}\n"
        "first = client.submit(guarded, 0, pure=False).result()\n"
        "rest = client.gather(client.map(guarded, range(1, 6), pure=False))",
        timeout=60,
    )
    kernel.execute("pn.flush(30)", timeout=60)
    first, rest = _json(kernel, "[first, rest]")
    assert not first.startswith("blocked"), "the first call fits under the limit"
    assert rest == ["blocked:400"] * 5, rest
    rows = [r for r in _json(kernel, "rows()") if r["use_case_name"] == "dask-proxy"]
    assert Counter(r["status"] for r in rows) == {"proxied": 1, "blocked": 5}
    assert all(r["worker"] for r in rows)
    at_payi = _at_payi(sandbox)
    assert at_payi[first] == 1  # proxied once, never also ingested


def test_a_cell_budget_holds_across_the_cluster(kernel: Kernel, sandbox: Any) -> None:
    kernel.execute(
        "def capped(i):\n"
        "    import payi_notebook\n"
        "    from openai import OpenAI\n"
        "    oa = OpenAI(base_url=URL + '/v1', api_key='sk-dask-SECRET', max_retries=0)\n"
        "    try:\n"
        "        return oa.chat.completions.create(model='gpt-4o-mini', max_tokens=16,\n"
        "                                          messages=[{'role': 'user', 'content': f'budget {i}'}]).id\n"
        "    except payi_notebook.BudgetExceeded as exc:\n"
        "        return 'refused: ' + exc.which",
    )
    kernel.execute(
        "%%payi --use-case dask-budget --budget 0.0002\n"
        "capped_results = client.gather(client.map(capped, range(60), pure=False))",
        timeout=180,
    )
    kernel.execute("pn.flush(60)", timeout=90)
    results = _json(kernel, "capped_results")
    sent = [r for r in results if not r.startswith("refused")]
    refused = [r for r in results if r.startswith("refused")]
    assert sent and refused, results
    assert set(refused) == {"refused: cell budget"}
    events = [e for e in sandbox.events() if e["context"].get("use_case_name") == "dask-budget"]
    assert sorted(e["provider_response_id"] for e in events) == sorted(sent)
    assert sum(e["cost"]["total"] for e in events) <= 0.0002, "the cluster spent past the cell's budget"
    rows = [r for r in _json(kernel, "rows()") if r["use_case_name"] == "dask-budget"]
    assert sum(r["status"] == "refused_budget" for r in rows) == len(refused)
    assert all(r["worker"] for r in rows)


def test_secrets_stay_out_of_graphs_rows_and_plugin_state(kernel: Kernel, sandbox: Any) -> None:
    dump = kernel.execute(
        "def plugin_state(dask_scheduler):\n"
        "    return repr(dask_scheduler.worker_plugins)\n"
        "print(client.run_on_scheduler(plugin_state), repr(client.cluster), json.dumps(rows()))",
    )
    assert "PayiWorkerPlugin" in dump or "payi_notebook" in dump, "the plugin state was not read"
    for secret in ("sk-dask-SECRET", "sk-ant-dask-SECRET", sandbox.api_key):
        assert secret not in dump
    assert not any("SECRET" in json.dumps(e) for e in sandbox.events())
