"""%%payi in a real kernel (nbclient): the real SDKs against the emulator, telemetry into the
sandbox. Ledger rows, units and context are checked, and every ingest body the sandbox
received is validated against the published Pay-i spec."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.kernels import kernel_env, notebook, run_notebook, text_of
from support.openapi_spec import validate_component

pytestmark = pytest.mark.timeout(240)

SECRET_PROMPT = "the launch code is 0000-PLEASE-DO-NOT-LOG"

CELLS = [
    "%load_ext payi_notebook",
    "import json, asyncio\n"
    "import payi_notebook as pn\n"
    "from openai import OpenAI, AsyncOpenAI, RateLimitError\n"
    "from anthropic import Anthropic\n"
    "URL = pn.emulator_url()\n"
    "oa = OpenAI(base_url=URL + '/v1', api_key='sk-kernel-SECRET', max_retries=0)\n"
    "aoa = AsyncOpenAI(base_url=URL + '/v1', api_key='sk-kernel-SECRET', max_retries=0)\n"
    "an = Anthropic(base_url=URL, api_key='sk-ant-kernel-SECRET', max_retries=0)\n"
    "MSG = [{'role': 'user', 'content': 'Summarise our quarterly numbers in one line.'}]",
    "%%payi --use-case summarize --user ana --prop team=ml\n"
    "r = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n"
    "ids = {'sync': r.id}",
    "%%payi --use-case fanout --step gather\n"
    "rs = await asyncio.gather(*(aoa.chat.completions.create(model='gpt-4o-mini', messages=MSG) for _ in range(2)))\n"
    "ids['async'] = [x.id for x in rs]",
    "%%payi --user bo\n"
    "chunks = list(oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, stream=True))\n"
    "assert all(c.choices for c in chunks), 'usage chunk leaked to the caller'\n"
    "with an.messages.stream(model='claude-haiku-4-5', max_tokens=64, messages=MSG) as s:\n"
    "    final = s.get_final_message()\n"
    "ids['stream'] = [chunks[0].id, final.id]",
    "%%payi\n"
    "try:\n"
    "    oa.chat.completions.create(model='gpt-4o-mini@429', messages=MSG)\n"
    "except RateLimitError as exc:\n"
    "    caught = exc.status_code",
    "%%payi\n"
    "stream = an.messages.create(model='claude-haiku-4-5', max_tokens=200, messages=MSG, stream=True)\n"
    "for i, event in enumerate(stream):\n"
    "    if i == 3:\n"
    "        break\n"
    "stream.close()",
    f"%%payi --no-log\nsecret = oa.chat.completions.create(model='gpt-4o-mini', messages=[{{'role': 'user', 'content': {SECRET_PROMPT!r}}}])",
    "report = pn.flush(30)\nprint(report)",
    "%payi status",
    "df = pn.ledger().df\n"
    "print(json.dumps({'caught': caught, 'ids': ids, 'secret_id': secret.id, 'rows': json.loads(df.drop(columns=['timestamp']).to_json(orient='records'))}))",
    "import time; time.sleep(2.0)  # let the badges' in-place updates arrive while a cell still runs",
]


@pytest.fixture(scope="module")
def executed(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    work = tmp_path_factory.mktemp("kernel")
    env = kernel_env(sandbox, work / "data", JPY_SESSION_NAME=str(work / "Quarterly Review.ipynb"))
    nb = run_notebook(notebook(CELLS), env, work)
    summary = json.loads(text_of(nb.cells[-2]).strip().splitlines()[-1])
    return nb, summary


def test_every_call_is_a_row_with_exact_usage_and_context(executed: tuple[Any, dict[str, Any]]) -> None:
    _, summary = executed
    rows = summary["rows"]
    assert len(rows) == 1 + 2 + 2 + 1 + 1 + 1
    by_id = {row["provider_response_id"]: row for row in rows}
    sync = by_id[summary["ids"]["sync"]]
    assert (sync["use_case_name"], sync["user_id"], sync["properties"]) == ("summarize", "ana", {"team": "ml"})
    assert sync["units"]["text"]["input"] == sync["input_tokens"] and sync["status"] == "sent"
    assert sync["cost_source"] == "payi" and sync["payi_cost_usd"] == pytest.approx(sync["est_cost_usd"])
    assert {by_id[i]["use_case_step"] for i in summary["ids"]["async"]} == {"gather"}
    streamed = [by_id[i] for i in summary["ids"]["stream"]]
    assert all(r["streaming"] and not r["partial"] and r["output_tokens"] > 0 for r in streamed)
    assert [r["provider"] for r in streamed] == ["openai", "anthropic"]
    assert summary["caught"] == 429
    failed = [r for r in rows if r["http_status"] == 429]
    assert len(failed) == 1 and failed[0]["error"]
    partial = [r for r in rows if r["partial"]]
    assert len(partial) == 1 and partial[0]["provider"] == "anthropic"
    assert all(r["status"] == "sent" for r in rows)
    counts = {r["execution_count"] for r in rows}
    assert len(counts) == 6 and None not in counts


def test_default_use_case_is_the_notebooks_own_name(executed: tuple[Any, dict[str, Any]]) -> None:
    _, summary = executed
    unnamed = [r for r in summary["rows"] if r["user_id"] == "bo"]
    assert {r["use_case_name"] for r in unnamed} == {"Quarterly_Review"}


def test_sandbox_got_each_call_once_and_every_body_matches_the_spec(
    executed: tuple[Any, dict[str, Any]], sandbox: Any
) -> None:
    _, summary = executed
    ours = {r["provider_response_id"] for r in summary["rows"]}
    events = [e for e in sandbox.events() if e["provider_response_id"] in ours]
    assert sorted(e["provider_response_id"] for e in events) == sorted(ours)
    assert {e["source"] for e in events} <= {"ingest", "bulk"}
    for event in events:
        schema = "IngestRequest" if event["source"] == "ingest" else "BulkIngestRequest"
        validate_component(schema, event["received"])
        assert "sk-kernel-SECRET" not in json.dumps(event)


def test_no_log_keeps_the_prompt_out_of_pay_i(executed: tuple[Any, dict[str, Any]], sandbox: Any) -> None:
    _, summary = executed
    (event,) = [e for e in sandbox.events() if e["provider_response_id"] == summary["secret_id"]]
    assert event["context"].get("logging_disabled") is True
    assert SECRET_PROMPT not in json.dumps(sandbox.events())


def test_cells_show_a_summary_line_updated_when_pay_i_answers(executed: tuple[Any, dict[str, Any]]) -> None:
    nb, _ = executed
    badge = text_of(nb.cells[2])
    assert "1 call" in badge and "tokens" in badge
    assert "(Pay-i)" in badge, f"the badge was not updated in place with Pay-i's cost: {badge!r}"
    assert "4 calls" not in text_of(nb.cells[4]) and "2 calls" in text_of(nb.cells[4])
    status = text_of(nb.cells[-3])
    assert "sandbox" in status and "0 pending" in status
