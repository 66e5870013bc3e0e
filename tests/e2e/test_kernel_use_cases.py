"""``%%payi --use-case NAME`` against a Pay-i that requires use case definitions (a strict sandbox), in a real kernel.

Telemetry: the flusher defines the use case once and sends the cell's calls again. Proxy: the
refused call cannot be re-sent for the user, so the cell defines it and says in one line to
run the cell again; the re-run goes through. With creation off the line says how to define it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import payi_notebook.sandbox as sandbox_pkg

from support.kernels import kernel_env, notebook, run_notebook, text_of

pytestmark = pytest.mark.timeout(240)

PRELUDE = (
    "import json, payi_notebook as pn\n"
    "from openai import OpenAI, BadRequestError\n"
    "oa = OpenAI(base_url=pn.emulator_url() + '/v1', api_key='sk-x', max_retries=0)\n"
    "MSG = [{'role': 'user', 'content': 'Sort these tickets.'}]\n"
    "def ask():\n"
    "    try:\n"
    "        oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n"
    "    except BadRequestError as exc:\n"
    "        print('refused', exc.status_code)"
)
PROXIED = "%%payi --proxy --use-case triage-proxy\nask()"
CELLS = [
    "%load_ext payi_notebook",
    PRELUDE,
    "%%payi --use-case triage-telemetry\nask()\nask()",
    PROXIED,
    PROXIED,
    "%config PayiMagics.create_use_cases = False",
    "%%payi --proxy --use-case triage-manual\nask()",
    "pn.flush(30)\n"
    "df = pn.ledger().df\n"
    "print(json.dumps({'rows': json.loads(df[['use_case_name', 'mode', 'status']].to_json(orient='records')),\n"
    "                  'defined': sorted(pn.use_cases.list()['name'])}))",
]


@pytest.fixture(scope="module")
def strict_sandbox() -> Iterator[sandbox_pkg.Sandbox]:
    with sandbox_pkg.start(strict_use_cases=True) as running:
        yield running


@pytest.fixture(scope="module")
def executed(
    strict_sandbox: sandbox_pkg.Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("kernel-use-cases")
    nb = run_notebook(notebook(CELLS), kernel_env(strict_sandbox, tmp / "data"), tmp, timeout=180)
    return nb, json.loads(text_of(nb.cells[-1]).strip().splitlines()[-1])


def test_telemetry_calls_are_sent_after_the_definition_is_made(
    executed: tuple[Any, dict[str, Any]], strict_sandbox: sandbox_pkg.Sandbox
) -> None:
    _, summary = executed
    telemetry = [r for r in summary["rows"] if r["use_case_name"] == "triage-telemetry"]
    assert [r["status"] for r in telemetry] == ["sent", "sent"]
    stored = [e for e in strict_sandbox.events() if (e["context"] or {}).get("use_case_name") == "triage-telemetry"]
    assert len(stored) == 2


def test_a_refused_proxied_cell_defines_the_use_case_and_says_to_run_it_again(
    executed: tuple[Any, dict[str, Any]],
) -> None:
    nb, summary = executed
    first, again = text_of(nb.cells[3]), text_of(nb.cells[4])
    assert "refused 400" in first
    assert (
        "payi: Pay-i requires a definition for use case 'triage-proxy'; payi_notebook defined it now: run the cell again"
        in first
    )
    assert "refused" not in again and "requires a definition" not in again
    proxied = [r["status"] for r in summary["rows"] if r["use_case_name"] == "triage-proxy"]
    assert proxied == ["failed", "proxied"]
    assert {"triage-proxy", "triage-telemetry"} <= set(summary["defined"])


def test_with_creation_off_the_cell_says_how_to_define_it(executed: tuple[Any, dict[str, Any]]) -> None:
    nb, summary = executed
    assert (
        "payi: Pay-i requires a definition for use case 'triage-manual': "
        "pn.use_cases.create('triage-manual', description=...), then run the cell again"
    ) in text_of(nb.cells[6])
    assert "triage-manual" not in summary["defined"]
