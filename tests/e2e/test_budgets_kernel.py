"""Budgets in a real kernel: the real SDKs against the emulator, telemetry and proxy into the sandbox.

A loop under ``--budget`` stops with the sandbox's own cost sum within the budget; 100
concurrent calls (threads and asyncio tasks) share one budget; streams (whole and cut short)
settle to their cost; proxy mode; a session budget across cells; thresholds warn once each;
``pn.progress`` as a widget and as text; ``pn.estimate`` with Anthropic's token count;
``%%payi --estimate``; ``%payi on --budget``. Refusals are one line and ledger rows."""

from __future__ import annotations

import json
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from payi_notebook.demo import kernel_manager

from support.kernels import kernel_env, notebook

pytestmark = pytest.mark.timeout(420)

SETUP = (
    "import json, asyncio, warnings\n"
    "from concurrent.futures import ThreadPoolExecutor\n"
    "import payi_notebook as pn\n"
    "from openai import OpenAI, AsyncOpenAI\n"
    "from anthropic import Anthropic\n"
    "URL = pn.emulator_url()\n"
    "oa = OpenAI(base_url=URL + '/v1', api_key='sk-budget', max_retries=2)\n"
    "aoa = AsyncOpenAI(base_url=URL + '/v1', api_key='sk-budget', max_retries=2)\n"
    "an = Anthropic(base_url=URL, api_key='sk-ant-budget', max_retries=2)\n"
    "MSG = [{'role': 'user', 'content': 'Summarise our quarterly numbers in one line.'}]\n"
    "def chat(**kw):\n"
    "    return oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, max_tokens=64, **kw)\n"
    "def state(scope_budget):\n"
    "    s = scope_budget.state()\n"
    "    return {'spent': s.spent, 'reserved': s.reserved, 'calls': s.calls, 'refused': s.refused}"
)
BOUND = "pn.estimate(model='gpt-4o-mini', messages=MSG, max_tokens=64).per_call_high_usd[0]"

CELLS = {
    "load": "%load_ext payi_notebook",
    "setup": SETUP,
    "bound": f"B = {BOUND}\nprint(json.dumps({{'bound': B}}))",
    # a 10,000-call loop under a budget that fits a few dozen calls
    "loop": "%%payi --use-case budget-loop --budget 0.002\nn = 0\nfor i in range(10000):\n    chat()\n    n += 1",
    "loop_after": "print(json.dumps({'n': n, 'exc': type(_exc).__name__ if (_exc := __import__('sys').last_value) else None}))",
    # 100 concurrent calls (50 threads, 50 tasks) against a budget that fits 10 bounds
    "concurrent": (
        "%%payi --use-case budget-conc --budget {10 * B}\n"
        "def one():\n"
        "    try:\n"
        "        return chat().id\n"
        "    except pn.BudgetExceeded as exc:\n"
        "        return exc\n"
        "with ThreadPoolExecutor(16) as pool:\n"
        "    threaded = list(pool.map(lambda _: one(), range(50)))\n"
        "async def task():\n"
        "    try:\n"
        "        return (await aoa.chat.completions.create(model='gpt-4o-mini', messages=MSG, max_tokens=64)).id\n"
        "    except pn.BudgetExceeded as exc:\n"
        "        return exc\n"
        "tasked = await asyncio.gather(*(task() for _ in range(50)))\n"
        "outcomes = threaded + list(tasked)\n"
        "refusals = [o for o in outcomes if isinstance(o, pn.BudgetExceeded)]\n"
        "conc = {'ok': len(outcomes) - len(refusals), 'refused': len(refusals), 'budget': 10 * B,\n"
        "        'messages': sorted({str(r).split(':')[0] for r in refusals}),\n"
        "        'fields_ok': all(r.budget == 10 * B and r.spent + r.reserved + r.bound > r.budget for r in refusals)}"
    ),
    # streams: whole, and cut short after three events, until the budget refuses one
    "streams": (
        "%%payi --use-case budget-streams --budget 0.004\n"
        "streamed = 0\n"
        "try:\n"
        "    for i in range(400):\n"
        "        if i % 2:\n"
        "            list(oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, max_tokens=64, stream=True))\n"
        "        else:\n"
        "            with an.messages.stream(model='claude-haiku-4-5', max_tokens=64, messages=MSG) as s:\n"
        "                for j, _ in enumerate(s):\n"
        "                    if j == 3:\n"
        "                        break\n"
        "        streamed += 1\n"
        "except pn.BudgetExceeded as exc:\n"
        "    stream_stop = {'streamed': streamed, 'spent': exc.spent, 'budget': exc.budget}"
    ),
    "proxy": (
        "%%payi --use-case budget-proxy --proxy --budget 0.001\n"
        "proxied = 0\n"
        "try:\n"
        "    for i in range(400):\n"
        "        chat()\n"
        "        proxied += 1\n"
        "except pn.BudgetExceeded as exc:\n"
        "    proxy_stop = {'proxied': proxied, 'spent': exc.spent}"
    ),
    "session_on": "%config PayiMagics.session_budget = 0.0015",
    "session_1": "%%payi --use-case budget-session\nfor i in range(5):\n    chat()",
    "session_2": "%%payi --use-case budget-session\nfor i in range(400):\n    chat()",
    "session_off": "pn.configure(session_budget=None)",
    "thresholds": (
        "pn.configure(budget_thresholds=[0.5, 0.9])\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    try:\n"
        "        with pn.track(use_case_name='budget-thresholds', budget=0.001):\n"
        "            for i in range(400):\n"
        "                chat()\n"
        "    except pn.BudgetExceeded:\n"
        "        pass\n"
        "thresholds = [str(w.message) for w in caught if issubclass(w.category, pn.BudgetWarning)]\n"
        "pn.configure(budget_thresholds=[0.8, 0.95])"
    ),
    "threshold_badge": (
        "%%payi --use-case budget-badge --budget 0.0003\n"
        "try:\n"
        "    for i in range(40):\n"
        "        chat()\n"
        "except pn.BudgetExceeded:\n"
        "    pass"
    ),
    "progress_widget": (
        "bar = pn.progress(range(200), budget=0.0008)\n"
        "for i in bar:\n"
        "    chat()\n"
        "widget_done = bar.done"
    ),
    "progress_text": "for i in pn.progress(range(3), widget=False):\n    chat()",
    "estimate": (
        "est = pn.estimate(model='claude-haiku-4-5', messages=MSG, max_tokens=64)\n"
        "with pn.track(use_case_name='budget-estimate'):\n"
        "    real = an.messages.create(model='claude-haiku-4-5', max_tokens=64, messages=MSG)\n"
        "estimated = {'input_low': int(est.input_tokens_low[0]), 'input_high': int(est.input_tokens_high[0]),\n"
        "             'real_input': real.usage.input_tokens, 'source': est.input_source[0],\n"
        "             'low': float(est.low_usd[0]), 'high': float(est.high_usd[0])}"
    ),
    "estimate_cell": "%%payi --use-case budget-estimate-cell --estimate 2\nfor i in range(100):\n    chat()",
    "on": "%payi on --use-case budget-on --budget 0.0002",
    "on_cell": "for i in range(50):\n    chat()",
    "off": "%payi off",
    "bad_budget": "%%payi --budget -3\nran_bad = True",
    "flush": "print(pn.flush(60))",
    "summary": (
        "df = pn.ledger().df\n"
        "rows = json.loads(df[['use_case_name', 'status', 'cost_usd', 'error', 'partial', 'mode']].to_json(orient='records'))\n"
        "print(json.dumps({'rows': rows, 'conc': conc, 'stream_stop': stream_stop, 'proxy_stop': proxy_stop,\n"
        "                  'thresholds': thresholds, 'widget_done': widget_done, 'estimated': estimated,\n"
        "                  'ran_bad': 'ran_bad' in globals()}))"
    ),
}


def _outputs(cell: Any) -> tuple[str, str, list[dict[str, Any]], list[str]]:
    """(stdout + text reprs, stderr, errors, mime types) of one executed cell."""
    out, err, errors, mimes = [], [], [], []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream":
            (out if o.get("name") == "stdout" else err).append(o.get("text", ""))
        elif kind == "error":
            errors.append(o)
        else:
            mimes.extend(o.get("data", {}))
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "".join(out), "".join(err), errors, mimes


@pytest.fixture(scope="module")
def run(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("budgets")
    nb = notebook(list(CELLS.values()))
    client = NotebookClient(nb, km=kernel_manager(), timeout=240, allow_errors=True, store_widget_state=True,
                            resources={"metadata": {"path": str(work)}})  # fmt: skip
    client.execute(env=kernel_env(sandbox, work / "data"))
    nbformat.write(nb, str(work / "budgets.ipynb"))  # kept for a look when a test fails
    cells = {name: _outputs(cell) for name, cell in zip(CELLS, nb.cells)}
    summary = json.loads(cells["summary"][0].strip().splitlines()[-1])
    events = sandbox.events()
    spent: dict[str, float] = {}
    counts: dict[str, int] = {}
    for event in events:
        name = (event.get("context") or {}).get("use_case_name")
        spent[name] = spent.get(name, 0.0) + event["cost"]["total"]
        counts[name] = counts.get(name, 0) + 1
    bound = json.loads(cells["bound"][0].strip().splitlines()[-1])["bound"]
    return {"cells": cells, "summary": summary, "spent": spent, "counts": counts, "bound": bound, "nb": nb}


def _rows(run: dict[str, Any], use_case: str) -> list[dict[str, Any]]:
    return [r for r in run["summary"]["rows"] if r["use_case_name"] == use_case]


def _one_line_refusal(errors: list[dict[str, Any]], which: str) -> str:
    assert len(errors) == 1 and errors[0]["ename"] == "BudgetExceeded", errors
    traceback = errors[0]["traceback"]
    assert len(traceback) == 1, traceback  # one line, not a traceback through the SDK
    assert f"refused by the {which}" in traceback[0] and "To go on:" in traceback[0]
    return traceback[0]


def test_setup_ran(run: dict[str, Any]) -> None:
    for name in ("load", "setup", "bound", "off", "flush", "summary"):
        assert not run["cells"][name][2], (name, run["cells"][name][2])


def test_a_loop_under_budget_stops_within_it_at_the_sandbox(run: dict[str, Any]) -> None:
    out, _, errors, _ = run["cells"]["loop"]
    line = _one_line_refusal(errors, "cell budget of $0.0020")
    assert "--budget" in line
    rows = _rows(run, "budget-loop")
    sent = [r for r in rows if r["status"] == "sent"]
    refused = [r for r in rows if r["status"] == "refused_budget"]
    assert len(refused) == 1 and refused[0]["cost_usd"] == 0 and refused[0]["error"] == line
    assert 5 < len(sent) < 10000 and run["counts"]["budget-loop"] == len(sent)  # the refused call never reached Pay-i
    assert run["spent"]["budget-loop"] <= 0.002  # what Pay-i (the sandbox) priced, not our own count
    assert run["spent"]["budget-loop"] == pytest.approx(sum(r["cost_usd"] for r in sent), rel=1e-6)
    # it stopped because the next call's bound did not fit, not earlier
    assert run["spent"]["budget-loop"] + 2 * run["bound"] > 0.002


def test_concurrent_calls_share_the_reservation(run: dict[str, Any]) -> None:
    conc = run["summary"]["conc"]
    assert conc["ok"] + conc["refused"] == 100 and conc["refused"] > 0 and conc["ok"] >= 10
    assert conc["fields_ok"] and conc["messages"] == ["payi"]
    assert run["spent"]["budget-conc"] <= conc["budget"]
    rows = _rows(run, "budget-conc")
    assert sum(r["status"] == "refused_budget" for r in rows) == conc["refused"]
    assert sum(r["status"] == "sent" for r in rows) == conc["ok"]
    out = run["cells"]["concurrent"][0]
    assert f"{conc['refused']} calls were refused by the cell budget" in out


def test_streams_settle_whole_and_partial(run: dict[str, Any]) -> None:
    stop = run["summary"]["stream_stop"]
    assert stop["streamed"] > 4 and stop["spent"] <= stop["budget"]
    rows = _rows(run, "budget-streams")
    assert any(r["partial"] for r in rows) and any(r["status"] == "sent" and not r["partial"] for r in rows)
    assert run["spent"]["budget-streams"] <= 0.004
    assert sum(r["cost_usd"] for r in rows if r["status"] == "sent") == pytest.approx(stop["spent"], rel=1e-6)


def test_proxy_mode_is_budgeted_the_same(run: dict[str, Any]) -> None:
    stop = run["summary"]["proxy_stop"]
    rows = _rows(run, "budget-proxy")
    assert stop["proxied"] > 3 and {r["mode"] for r in rows} == {"proxy"}
    assert sum(r["status"] == "proxied" for r in rows) == stop["proxied"]
    assert sum(r["status"] == "refused_budget" for r in rows) == 1
    assert run["spent"]["budget-proxy"] <= 0.001
    assert run["counts"]["budget-proxy"] == stop["proxied"]  # the refused call never reached the proxy


def test_session_budget_spans_cells(run: dict[str, Any]) -> None:
    assert not run["cells"]["session_1"][2]
    _one_line_refusal(run["cells"]["session_2"][2], "session budget of $0.0015")
    assert run["spent"]["budget-session"] <= 0.0015
    rows = _rows(run, "budget-session")
    assert sum(r["status"] == "sent" for r in rows) > 5  # the second cell went on from the first's spend


def test_thresholds_warn_once_each_and_show_in_the_badge(run: dict[str, Any]) -> None:
    warned = run["summary"]["thresholds"]
    assert len(warned) == 2 and "50% used" in warned[0] and "90% used" in warned[1], warned
    out, err, _, mimes = run["cells"]["threshold_badge"]
    assert "BudgetWarning" in err and err.count("80% used") == 1
    assert "cell budget $0.0" in out and "80% passed" in out and "text/html" in mimes


def test_progress_widget_stops_at_its_budget(run: dict[str, Any]) -> None:
    out, err, errors, mimes = run["cells"]["progress_widget"]
    assert not errors
    assert "application/vnd.jupyter.widget-view+json" in mimes and "text/html" in mimes
    assert "pn.progress stopped after" in out and "Raise budget= to go on" in out
    assert 0 < run["summary"]["widget_done"] < 200
    assert "spent" in out and "/item" in out and "projected" in out  # the static copy of the bar


def test_progress_text(run: dict[str, Any]) -> None:
    out, err, errors, mimes = run["cells"]["progress_text"]
    assert not errors and "application/vnd.jupyter.widget-view+json" not in mimes
    assert "3/3" in err and "spent" in err and "/item" in err and "projected" in err


def test_estimate_counts_anthropic_tokens_exactly(run: dict[str, Any]) -> None:
    est = run["summary"]["estimated"]
    assert est["source"].startswith("count_tokens")
    assert est["input_low"] == est["input_high"] == est["real_input"]
    rows = _rows(run, "budget-estimate")
    assert len(rows) == 1 and est["low"] <= rows[0]["cost_usd"] <= est["high"]


def test_estimate_cell_projects_from_its_first_calls(run: dict[str, Any]) -> None:
    out, _, errors, _ = run["cells"]["estimate_cell"]
    assert len(errors) == 1 and errors[0]["ename"] == "EstimateDone" and len(errors[0]["traceback"]) == 1
    assert "estimate from the first 2 call(s)" in out and "10,000 calls ≈ $" in out
    assert len(_rows(run, "budget-estimate-cell")) == 2


def test_payi_on_budget_applies_to_every_cell(run: dict[str, Any]) -> None:
    _one_line_refusal(run["cells"]["on_cell"][2], "cell budget of $0.0002")
    assert run["spent"]["budget-on"] <= 0.0002


def test_a_bad_budget_is_refused_before_the_cell_runs(run: dict[str, Any]) -> None:
    _, err, _, _ = run["cells"]["bad_budget"]
    assert "UsageError: --budget must be a positive amount in USD like 0.50" in err  # IPython's one line
    assert run["summary"]["ran_bad"] is False
