"""Gemini and Vertex in a real kernel, with google-genai's async path on aiohttp and, in a kernel
where aiohttp cannot be imported, on httpx2: telemetry and proxy, a Vertex Block limit that
refuses a call, and a Gemini API call under ``--proxy`` that goes direct, is ingested, and is
named once as unguarded. Afterwards Pay-i holds exactly one event per call."""

from __future__ import annotations

import json
from typing import Any

import nbformat
import pytest

from support.kernels import kernel_env, run_notebook, text_of

pytestmark = pytest.mark.timeout(300)

BLOCK_AIOHTTP = "import sys\nsys.modules['aiohttp'] = None  # as if aiohttp were not installed"
CELLS = [
    "%load_ext payi_notebook",
    "import json, payi_notebook as pn\n"
    "from google import genai\n"
    "from google.genai import types, errors\n"
    "from google.oauth2.credentials import Credentials\n"
    "from payi_notebook.capture import hooked_libraries\n"
    "URL = pn.emulator_url()\n"
    "LONG = types.HttpOptions(base_url=URL, headers={'X-Emulator-Fault': 'reply=2000'})\n"
    "vx = genai.Client(vertexai=True, project='proj', location='us-central1', credentials=Credentials('tok'), http_options=LONG)\n"
    "gm = genai.Client(api_key='goog-key', http_options=types.HttpOptions(base_url=URL))\n"
    "budget = pn.limits.create('vertex-budget-' + KIND, 0.001, type='block')\n"
    "refused = []",
    "%%payi --telemetry --use-case genai\n"
    "r = await gm.aio.models.generate_content(model='gemini-2.5-flash', contents='One line on tides.')\n"
    "s = [c async for c in await vx.aio.models.generate_content_stream(model='gemini-2.5-flash', contents='Two lines on tides.')]",
    *[
        "%%payi --proxy --use-case genai --limit {budget.limit_id}\n"
        "try:\n"
        "    await vx.aio.models.generate_content(model='gemini-2.5-flash', contents='A long essay on tides.')\n"
        "except errors.ClientError as exc:\n"
        "    refused.append(exc.code)\n"
        "    print('refused:', exc.code)"
        for _ in range(2)
    ],
    "%%payi --proxy --use-case genai --limit {budget.limit_id}\n"
    "g = await gm.aio.models.generate_content(model='gemini-2.5-flash', contents='One line on waves.')\n"
    "g2 = gm.models.generate_content(model='gemini-2.5-flash', contents='Another line on waves.')",
    "pn.flush(30)\n"
    "df = pn.ledger().df\n"
    "print(json.dumps({'refused': refused, 'libraries': list(hooked_libraries()),\n"
    "    'rows': json.loads(df[['provider', 'mode', 'status', 'payi_request_id', 'input_tokens', 'output_tokens',\n"
    "                           'streaming', 'est_cost_usd', 'payi_cost_usd']].to_json(orient='records'))}))",
]


@pytest.fixture(scope="module", params=["aiohttp", "no-aiohttp"])
def executed(request: pytest.FixtureRequest, sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp(f"kernel-{request.param}")
    cells = ([BLOCK_AIOHTTP] if request.param == "no-aiohttp" else []) + [f"KIND = {request.param!r}", *CELLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    run_notebook(nb, kernel_env(sandbox, work / "data"), work, timeout=180)
    return request.param, nb, json.loads(text_of(nb.cells[-1]).strip().splitlines()[-1])


def test_the_async_path_is_hooked_where_google_genai_sends_it(executed: Any) -> None:
    kind, _, summary = executed
    assert ("aiohttp" in summary["libraries"]) == (kind == "aiohttp")
    rows = summary["rows"]
    assert [r["provider"] for r in rows] == ["google", "vertex", "vertex", "vertex", "google", "google"]
    assert [r["streaming"] for r in rows[:2]] == [False, True]
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows if r["status"] != "blocked")


def test_a_vertex_block_limit_refuses_the_second_call(executed: Any) -> None:
    _, nb, summary = executed
    rows = summary["rows"]
    assert [r["status"] for r in rows[2:4]] == ["proxied", "blocked"]
    assert summary["refused"] == [400]
    assert rows[2]["payi_cost_usd"] > 0.001 and rows[3]["payi_cost_usd"] == 0
    text = "".join(text_of(cell) for cell in nb.cells)
    assert "vertex-budget" in text and "refused: 400" in text


def test_gemini_api_under_proxy_goes_direct_and_the_cell_says_so_once(executed: Any) -> None:
    _, nb, summary = executed
    rows = summary["rows"]
    assert [(r["mode"], r["status"]) for r in rows[4:]] == [("telemetry", "sent"), ("telemetry", "sent")]
    cell = next(c for c in nb.cells if "g2 = gm.models" in c.source)
    assert text_of(cell).count("Block limits cannot apply") == 1, text_of(cell)


def test_pay_i_holds_exactly_one_event_per_call(executed: Any, sandbox: Any) -> None:
    _, _, summary = executed
    ids = [r["payi_request_id"] for r in summary["rows"]]
    assert None not in ids and len(set(ids)) == len(ids) == 6
    events = [e for e in sandbox.events() if e["request_id"] in set(ids)]
    assert sorted(e["source"] for e in events) == ["ingest"] * 4 + ["proxy"] * 2
    for row in summary["rows"]:
        if row["status"] != "blocked":
            assert row["payi_cost_usd"] == pytest.approx(row["est_cost_usd"], rel=1e-6)
