"""Proxy mode in a real kernel (nbclient): a $0.05 Block limit refuses a call mid-notebook and the
cell says why; an Allow limit goes past its max; JSON, streaming and async calls; Pay-i's cost on
every row; exactly one Pay-i event per call."""

from __future__ import annotations

import json
from typing import Any

import nbformat
import pytest

from support.kernels import kernel_env, run_notebook, text_of

pytestmark = pytest.mark.timeout(240)

# gpt-4o with a 2,000-token reply (the emulator's reply= directive) costs ~$0.02 a call:
# the third call passes $0.05, the fourth is refused.
PRICEY = "gpt-4o"

CELLS = [
    "%load_ext payi_notebook",
    "import json, payi_notebook as pn\n"
    "from openai import OpenAI, AsyncOpenAI, BadRequestError\n"
    "URL = pn.emulator_url()\n"
    "oa = OpenAI(base_url=URL + '/v1', api_key='sk-x', max_retries=0)\n"
    "aoa = AsyncOpenAI(base_url=URL + '/v1', api_key='sk-x', max_retries=0)\n"
    "MSG = [{'role': 'user', 'content': 'Draft the launch plan.'}]\n"
    "LONG = {'X-Emulator-Fault': 'reply=2000'}\n"
    "budget = pn.limits.create('launch-budget', 0.05, type='block')\n"
    "soft = pn.limits.create('launch-soft', 0.01, type='allow')\n"
    "LIMITS = f'--limit {budget.limit_id} --limit {soft.limit_id}'\n"
    "refused = []",
]
for n in range(5):
    kind = (
        "r = oa.chat.completions.create(model=MODEL, messages=MSG, extra_headers=LONG)",
        "r = list(oa.chat.completions.create(model=MODEL, messages=MSG, stream=True, extra_headers=LONG))",
        "r = await aoa.chat.completions.create(model=MODEL, messages=MSG, extra_headers=LONG)",
    )[n % 3]
    CELLS.append(
        "%%payi --proxy --use-case launch $LIMITS\n"
        f"MODEL = {PRICEY!r}\n"
        "try:\n"
        f"    {kind}\n"
        "except BadRequestError as exc:\n"
        "    refused.append(exc.status_code)\n"
        "    print('refused:', exc.status_code)"
    )
CELLS += [
    "pn.flush(30)\n"
    "df = pn.ledger().df\n"
    "print(json.dumps({'refused': refused, 'budget': budget.limit_id, 'soft': soft.limit_id,\n"
    "                  'spent': pn.limits.get(budget.limit_id).spent,\n"
    "                  'rows': json.loads(df[['provider_response_id', 'payi_request_id', 'mode', 'status', 'payi_cost_usd', 'limit_states', 'streaming']].to_json(orient='records'))}))",
]


@pytest.fixture(scope="module")
def executed(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    work = tmp_path_factory.mktemp("kernel-proxy")
    cells = [c.replace("$LIMITS", "{LIMITS}") for c in CELLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    run_notebook(nb, kernel_env(sandbox, work / "data"), work)
    return nb, json.loads(text_of(nb.cells[-1]).strip().splitlines()[-1])


def test_the_block_limit_refuses_the_fourth_call_and_the_cell_says_why(executed: tuple[Any, dict[str, Any]]) -> None:
    nb, summary = executed
    statuses = [r["status"] for r in summary["rows"]]
    assert statuses == ["proxied", "proxied", "proxied", "blocked", "blocked"], statuses
    assert summary["refused"] == [400, 400]
    assert summary["spent"] > 0.05
    fourth = text_of(nb.cells[5])
    assert "refused: 400" in fourth
    assert "launch-budget" in fourth and "max" in fourth and "$0.0500" in fourth, fourth


def test_every_row_carries_pay_is_cost_and_limit_states(executed: tuple[Any, dict[str, Any]]) -> None:
    _, summary = executed
    rows = summary["rows"]
    assert all(r["mode"] == "proxy" for r in rows)
    assert all(r["payi_cost_usd"] > 0.015 for r in rows[:3]) and all(r["payi_cost_usd"] == 0 for r in rows[3:])
    budget, soft = summary["budget"], summary["soft"]
    assert [r["limit_states"][soft] for r in rows[:3]] == ["overrun", "overrun", "overrun"], "the Allow limit lets calls through past its max"
    assert rows[2]["limit_states"][budget] == "overrun"
    assert rows[3]["limit_states"] == {budget: "blocked", soft: "blocked_external"}
    assert [r["streaming"] for r in rows[:3]] == [False, True, False]


def test_pay_i_holds_exactly_one_event_per_call(executed: tuple[Any, dict[str, Any]], sandbox: Any) -> None:
    _, summary = executed
    ids = {r["payi_request_id"] for r in summary["rows"]}
    events = [e for e in sandbox.events() if e["request_id"] in ids]
    assert len(events) == len(ids) == 5 and {e["source"] for e in events} == {"proxy"}
    assert sum(bool(e["blocked_limit_ids"]) for e in events) == 2


def test_an_uncaught_refusal_shows_our_line_first_and_a_short_traceback(sandbox: Any, tmp_path: Any) -> None:
    from nbclient import NotebookClient

    from payi_notebook.demo import kernel_manager

    cells = [
        "%load_ext payi_notebook",
        "import payi_notebook as pn\n"
        "from openai import OpenAI\n"
        "oa = OpenAI(base_url=pn.emulator_url() + '/v1', api_key='sk-x', max_retries=0)\n"
        "tight = pn.limits.create('tight', 0.000001, type='block')\n"
        "MSG = [{'role': 'user', 'content': 'hi'}]",
        "%%payi --proxy --limit {tight.limit_id}\noa.chat.completions.create(model='gpt-4o-mini', messages=MSG)",
        "%%payi --proxy --limit {tight.limit_id}\noa.chat.completions.create(model='gpt-4o-mini', messages=MSG)",
        "import openai\n"
        "try:\n"
        "    with pn.track(proxy=True, limit_ids=[tight.limit_id]):\n"
        "        oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n"
        "except openai.BadRequestError as exc:\n"
        "    print('caught the SDK type:', type(exc).__name__)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, km=kernel_manager(), timeout=120, allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute(env=kernel_env(sandbox, tmp_path / "data"))
    outputs = nb.cells[3].outputs
    kinds = [o["output_type"] for o in outputs]
    # a cell that runs past 0.5 s may show its live badge (a display) first; our line is the first text
    first_text = kinds.index("stream")
    assert "1 call was blocked by limit 'tight'" in outputs[first_text]["text"], outputs
    assert "error" in kinds and kinds.index("error") > first_text, "our line comes before the traceback"
    error = next(o for o in outputs if o["output_type"] == "error")
    assert error["ename"] == "BadRequestError", "the exception is the SDK's own"
    shown = "\n".join(error["traceback"])
    assert "site-packages" not in shown and len(error["traceback"]) <= 6, shown
    assert "oa.chat.completions.create" in shown  # the user's own line stays
    after = "".join(o.get("text", "") for o in outputs[kinds.index("error") + 1 :])
    assert "blocked by limit" not in after, "explained once"
    assert "caught the SDK type: BadRequestError" in text_of(nb.cells[4])
