"""The notebooks, top to bottom in real kernels against a real sandbox, and ``make demo``'s job.

Each notebook runs in a fresh kernel of this Python (nbclient), pointed at its own sandbox, as
if opened by Jupyter (``JPY_SESSION_NAME``). Checks: no error output anywhere, and what the
notebook did is real: the events the sandbox stored, the ledger the kernel held (read by a
probe cell appended after the notebook's own), the limits' state, the Parquet export.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

import payi_notebook.sandbox as sandbox_pkg
from payi_notebook.demo import QUICKSTART, NotebookError, errors, execute, kernel_env, sandbox_env, summary
from payi_notebook.ledger import read_parquet

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("01_quickstart", "02_proxy_and_budgets", "03_exploring_costs", "04_providers", "05_dask", "06_use_cases_kpis")
PROBE_MARK = "PROBE:"
PROBE = f"""
import json as _json
import payi_notebook as _pn
_pn.flush(60)
_cols = ["provider_response_id", "mode", "provider", "resource", "use_case_name", "use_case_step", "user_id",
         "limit_ids", "payi_cost_usd", "est_cost_usd", "cost_source", "status", "properties", "streaming",
         "category", "deployment", "payi_request_id"]
print({PROBE_MARK!r} + _pn.ledger().df[_cols].to_json(orient="records"))
"""


def clean_env() -> dict[str, str]:
    """Our environment without provider keys or Pay-i settings: every run uses the emulator and its sandbox."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PAYI_") and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }


class Run:
    """One executed notebook: the notebook, the sandbox's events and limits, the kernel's ledger rows."""

    def __init__(self, nb: Any, sandbox: Any, rows: list[dict[str, Any]], elapsed: float, workdir: Path) -> None:
        self.nb = nb
        self.events = sandbox.events()
        self.limits = {item["limit_id"]: item for item in _limits(sandbox)}
        self.rows = rows
        self.sandbox = sandbox
        self.elapsed = elapsed
        self.workdir = workdir

    def cell(self, snippet: str) -> Any:
        """The one code cell whose source contains ``snippet``."""
        found = [c for c in self.nb.cells if c.cell_type == "code" and snippet in c.source]
        assert len(found) == 1, f"{len(found)} cells contain {snippet!r}"
        return found[0]


def _limits(sandbox: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox.base_url}/api/v1/limits", headers={"xProxy-api-key": sandbox.api_key}, timeout=10)
    response.raise_for_status()
    return response.json()["items"]


def text(cell: Any, stream: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == stream)


def mimetypes(cell: Any) -> set[str]:
    return {key for o in cell.outputs for key in o.get("data", {})}


@pytest.fixture
def run_notebook(tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    """Execute a copy of ``notebooks/NAME.ipynb`` in ``tmp_path`` against a fresh sandbox, plus the probe."""
    sandboxes: list[Any] = []

    def run(name: str) -> Run:
        sandbox = sandbox_pkg.start()
        sandboxes.append(sandbox)
        path = tmp_path / f"{name}.ipynb"
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
        nbformat.write(nb, path)
        env = kernel_env(path, sandbox_env(sandbox), tmp_path / "data", base=clean_env())
        started = time.perf_counter()
        executed = execute(path, env, timeout=240)
        elapsed = time.perf_counter() - started
        probe = executed.cells.pop()
        line = next(x for x in text(probe).splitlines() if x.startswith(PROBE_MARK))
        return Run(executed, sandbox, json.loads(line[len(PROBE_MARK) :]), elapsed, tmp_path)

    yield run
    for sandbox in sandboxes:
        sandbox.stop()


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_clean(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    assert "widgets" not in nb.metadata, "commit notebooks without widget state"
    assert code[0].source.strip() == "%load_ext payi_notebook"
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(markdown) >= 4 and markdown[0].source.startswith("# ")


def test_quickstart(run_notebook: Callable[[str], Run]) -> None:
    run = run_notebook("01_quickstart")
    assert errors(run.nb) == []

    events = {e["provider_response_id"]: e for e in run.events}
    assert len(run.events) == len(events) == 6, [e["source"] for e in run.events]
    assert [(e["source"], e["category"]) for e in run.events].count(("proxy", "system.openai")) == 1
    assert (
        sorted(e["category"] for e in run.events if e["source"] != "proxy")
        == ["system.anthropic"] * 3 + ["system.openai"] * 2
    )
    assert all(e["http_status_code"] == 200 and e["cost"]["total"] > 0 for e in run.events)

    rows = {r["provider_response_id"]: r for r in run.rows}
    assert rows.keys() == events.keys(), "the ledger and the sandbox disagree on which calls happened"
    for rid, row in rows.items():
        event = events[rid]
        assert row["cost_source"] == "payi" and row["payi_cost_usd"] == pytest.approx(event["cost"]["total"])
        assert row["status"] == ("proxied" if event["source"] == "proxy" else "sent")
        assert row["use_case_name"] == event["context"]["use_case_name"]
    by_use_case = sorted((r["use_case_name"], r["provider"], r["mode"]) for r in run.rows)
    assert by_use_case == [
        ("01_quickstart", "openai", "telemetry"),  # the bare %%payi cell: the notebook's name is the use case
        ("summarize", "openai", "proxy"),
        ("summarize", "openai", "telemetry"),
        ("triage", "anthropic", "telemetry"),
        ("triage", "anthropic", "telemetry"),
        ("triage", "anthropic", "telemetry"),
    ]
    assert sum(r["streaming"] for r in run.rows) == 1
    assert [r["properties"] for r in run.rows if r["properties"]] == [{"channel": "email"}]

    charged = [e for e in run.events if e["limit_ids"] == ["quickstart"]]
    assert len(charged) == 2
    budget = run.limits["quickstart"]
    assert budget["limit_type"] == "allow" and budget["max"] == 0.01
    assert budget["totals"]["cost"]["total"]["base"] == pytest.approx(sum(e["cost"]["total"] for e in charged))

    assert "application/vnd.jupyter.widget-view+json" in mimetypes(run.cell("%payi budget"))
    assert "application/vnd.jupyter.widget-view+json" in mimetypes(run.cell("%payi breakdown"))
    state = run.nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert len(state) > 10, "widget state is stored for the HTML export"
    assert "5 sent, 1 proxied" in run.cell("pn.flush()").outputs[0]["data"]["text/plain"]

    report = summary(run.events)  # what `make demo` prints, from these very events
    proxied = next(e for e in run.events if e["source"] == "proxy")
    assert f"${proxied['cost']['total']:.6f}" in report.splitlines()[1]


def test_dask(run_notebook: Callable[[str], Run]) -> None:
    pytest.importorskip("distributed")
    run = run_notebook("05_dask")
    assert errors(run.nb) == []
    scored = [e for e in run.events if e["context"].get("use_case_name") == "review-scoring"]
    assert len(scored) == 24 and {e["context"]["use_case_step"] for e in scored} == {"score"}
    rows = {r["provider_response_id"]: r for r in run.rows}
    assert {e["provider_response_id"] for e in scored} == rows.keys()
    assert all(r["status"] == "sent" and r["user_id"] == "ana" for r in rows.values())
    assert "24 sent (24 by 2 Dask workers)" in text(run.cell("pn.flush()"))
    table = run.cell('groupby("worker"').outputs[0]["data"]["text/plain"]
    assert table.count("tcp://127.0.0.1:") == 2


def test_proxy_and_budgets(run_notebook: Callable[[str], Run]) -> None:
    run = run_notebook("02_proxy_and_budgets")
    assert errors(run.nb) == []

    compare = run.rows[:2]
    assert [r["mode"] for r in compare] == ["telemetry", "proxy"]
    assert compare[0]["payi_cost_usd"] == pytest.approx(compare[1]["payi_cost_usd"])

    printed = text(run.cell("except BadRequestError"))
    lines = [line for line in printed.splitlines() if line.startswith("call ")]
    assert lines[0] == "call 1: allowed"
    assert lines[-1].endswith("refused by Pay-i: limit_reached: Insufficient limit for the requested operation"), (
        printed
    )
    allowed = len(lines) - 1
    assert allowed >= 2
    assert "1 call was blocked by limit 'nb02-block'" in printed  # the cell's own explanation, after it ran

    on_block = [e for e in run.events if "nb02-block" in e["limit_ids"]]
    blocked = [e for e in on_block if e["blocked_limit_ids"]]
    assert len(blocked) == 1 and blocked[0]["http_status_code"] == 400 and blocked[0]["cost"]["total"] == 0
    assert blocked[0]["blocked_limit_ids"] == ["nb02-block"]
    assert on_block[-1]["limit_states"] == {"nb02-block": "ok"}, "after the max was raised, the call went through"
    assert len(on_block) == allowed + 2
    assert [r["status"] for r in run.rows].count("blocked") == 1
    block = run.limits["nb02-block"]
    assert block["max"] == 1.0 and block["totals"]["requests"]["blocked"] == 1

    allow = run.limits["nb02-allow"]
    on_allow = [e for e in run.events if e["limit_ids"] == ["nb02-allow"]]
    assert [e["source"] for e in on_allow].count("proxy") == 5 and len(on_allow) == 6
    assert all(e["http_status_code"] == 200 for e in on_allow)
    assert allow["totals"]["cost"]["total"]["base"] == pytest.approx(sum(e["cost"]["total"] for e in on_allow))
    assert allow["totals"]["cost"]["total"]["base"] > allow["max"], "the Allow limit is overrun"
    assert "overrun" in run.cell('pn.limits.get("nb02-allow")').outputs[0]["data"]["text/plain"]

    assert "blocked by" in run.cell("%payi result").outputs[0]["data"]["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in mimetypes(run.cell("pn.widgets.BudgetPanel()"))


def test_exploring_costs(run_notebook: Callable[[str], Run]) -> None:
    run = run_notebook("03_exploring_costs")
    assert errors(run.nb) == []
    calls = len(run.rows)
    assert 2000 <= calls <= 5000, f"{calls} calls: 'a few thousand'"
    assert len(run.events) == calls and {e["source"] for e in run.events} <= {"ingest", "bulk"}
    assert {r["cost_source"] for r in run.rows} == {"payi"}

    exported = read_parquet(run.workdir / "ledger.parquet")
    assert len(exported) == calls
    assert set(exported.provider_response_id) == {e["provider_response_id"] for e in run.events}
    assert set(exported.use_case_name) == {"triage", "answer", "summarize"}
    assert set(exported.use_case_step) == {"classify", "search", "draft", "review", "summarize"}
    assert exported.resource.nunique() == 5 and exported.user_id.nunique() == 8
    answer_runs = exported[exported.use_case_name == "answer"].groupby("use_case_id").size()
    assert (answer_runs == 3).all(), "each run of 'answer' is one use case instance with three steps"
    assert exported.cost_usd.sum() == pytest.approx(sum(e["cost"]["total"] for e in run.events))

    plots = [c for c in run.nb.cells if c.cell_type == "code" and "application/vnd.plotly.v1+json" in mimetypes(c)]
    assert len(plots) == 3
    assert run.elapsed < 120, f"03 took {run.elapsed:.0f} s; keep it quick"


def test_providers(run_notebook: Callable[[str], Run]) -> None:
    run = run_notebook("04_providers")
    assert errors(run.nb) == []
    rows = [r for r in run.rows if r["provider"] != "bedrock"]
    seen = [(r["provider"], r["category"], r["mode"], r["status"]) for r in rows]
    assert seen[:5] + sorted(seen[5:]) == [
        ("azure_openai", "system.azureopenai", "telemetry", "sent"),
        ("azure_anthropic", "system.azure", "proxy", "proxied"),
        ("google", "system.google.vertex", "telemetry", "sent"),  # automatic function calling: the call...
        ("google", "system.google.vertex", "telemetry", "sent"),  # ...and the answer, two billed rounds
        ("google", "system.google.vertex", "telemetry", "sent"),  # asked for --proxy: no Pay-i route, ingested
        ("vertex", "system.google.vertex", "proxy", "proxied"),
        ("vertex", "system.google.vertex", "proxy", "proxied"),
    ], seen  # the two Vertex calls run concurrently: either may come first
    assert rows[0]["deployment"] == "support-gpt" and rows[0]["resource"] == "gpt-4o-mini-2024-07-18"
    assert {r["resource"] for r in rows[5:]} == {"google.gemini-2.5-flash", "anthropic.claude-sonnet-4-5@20250929"}
    assert all(r["cost_source"] == "payi" and r["payi_cost_usd"] > 0 for r in rows)
    events = [e for e in run.events if e["category"] != "system.aws.bedrock"]
    by_request = {e["request_id"]: e for e in events}
    assert len(events) == len(rows) == len(by_request)
    assert sorted(by_request[r["payi_request_id"]]["source"] for r in rows) == ["ingest"] * 4 + ["proxy"] * 3
    assert text(run.cell("generate_content_stream")).count("Block limits cannot apply") == 1
    others = [c for c in run.nb.cells if c.cell_type == "code" and "generate_content_stream" not in c.source]
    assert all("Block limits cannot apply" not in text(c) for c in others)
    assert "3 turns" in text(run.cell("automatic_function_calling_history"))
    # Bedrock: boto3 (Converse with caching, streams, InvokeModel), AnthropicBedrock, proxy under a Block limit
    rows = [r for r in run.rows if r["provider"] == "bedrock"]
    assert {r["category"] for r in rows} == {"system.aws.bedrock"}
    telemetry = [r for r in rows if r["mode"] == "telemetry"]
    proxied = [r for r in rows if r["mode"] == "proxy"]
    assert len(telemetry) == 6 and {r["status"] for r in telemetry} == {"sent"}
    assert proxied and proxied[-1]["status"] == "blocked" and {r["status"] for r in proxied[:-1]} == {"proxied"}
    assert all(r["payi_cost_usd"] > 0 for r in rows if r["status"] != "blocked")
    events = [e for e in run.events if e["category"] == "system.aws.bedrock"]
    assert len(events) == len(rows), "one Pay-i event per call (Pay-i records the refused one too)"
    sources = [e["source"] for e in events]
    assert sources.count("proxy") == len(proxied) and len(sources) - sources.count("proxy") == len(telemetry)
    assert "refused at call" in text(run.cell("refused = attempt"))
    caching = text(run.cell("first = bedrock.converse"))
    assert "cacheWriteInputTokens" in caching and "cacheReadInputTokens" in caching


def test_use_cases_kpis(run_notebook: Callable[[str], Run]) -> None:
    run = run_notebook("06_use_cases_kpis")
    assert errors(run.nb) == []
    rows = [r for r in run.rows if r["use_case_name"] == "ticket-reply"]
    assert len(rows) == len(run.events) == 16 and {r["status"] for r in rows} == {"sent"}
    table = run.cell("by_version = ").outputs[0]["data"]["text/plain"]
    assert "cost_per_accepted" in table
    # the table's numbers are the sandbox's: Pay-i's cost of each version's calls over its accepted replies
    scores = httpx.get(
        f"{run.sandbox.base_url}/api/v1/reports/kpi_scores", headers={"xProxy-api-key": run.sandbox.api_key}, timeout=10
    ).text.splitlines()[1:]
    accepted_by_instance = {line.split(",")[1]: float(line.split(",")[4]) for line in scores}
    for version in (1, 2):
        mine = [e for e in run.events if e["context"]["use_case_version"] == version]
        cost = sum(e["cost"]["total"] for e in mine)
        accepted = sum(accepted_by_instance[e["context"]["use_case_id"]] for e in mine)
        assert 0 < accepted <= 8
        assert f"{cost / accepted:.6f}" in table
    assert "application/vnd.plotly.v1+json" in mimetypes(run.cell("px.bar("))
    assert "'verdict': 'good'" in run.cell("pn.annotate(").outputs[0]["data"]["text/plain"]
    # the notebook annotates the ledger's last row; the sandbox may have received the calls in another order
    (annotated,) = [e for e in run.events if e["provider_response_id"] == rows[-1]["provider_response_id"]]
    assert annotated["context"]["properties"] == {"reviewer": "ana", "verdict": "good"}
    assert "total_cost" in run.cell("pn.report(").outputs[0]["data"]["text/plain"]


def test_demo_runs_the_quickstart_and_prints_both_costs(tmp_path: Path) -> None:
    """``make demo``'s job, as a user runs it: a subprocess, its own sandbox, files under the output folder."""
    env = clean_env() | {"PAYI_NOTEBOOK_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "payi_notebook.demo", "--out", str(tmp_path / "build")],
        env=env, cwd=tmp_path, check=False, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "OpenAI chat completion via the Pay-i proxy: gpt-4o-mini" in out
    assert "Anthropic message via telemetry ingest:     claude-haiku-4-5" in out
    assert "no errors" in out and "provider emulator" in out
    hint = out.strip().splitlines()[-1]
    assert hint.startswith("Run it yourself, budget panel and all: ") and hint.endswith(" lab " + str(QUICKSTART))
    assert Path(hint.split(": ", 1)[1].split(" lab ")[0]).exists(), "the hint names this environment's jupyter"
    executed = nbformat.read(tmp_path / "build" / "01_quickstart.ipynb", as_version=4)
    assert errors(executed) == [] and all(c.execution_count for c in executed.cells if c.cell_type == "code")
    report = tmp_path / "build" / "01_quickstart.html"
    assert f"HTML report (opens offline, every table and chart visible): {report.resolve()}" in out
    assert static_views_shown(report.read_text(encoding="utf-8"))
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state, "the executed notebook keeps its widget state: it reopens in JupyterLab with its widgets"
    breakdown = [o for c in executed.cells if c.source.startswith("%payi breakdown") for o in c.outputs]
    assert [next(iter(set(o.data) - {WIDGET_MIME, "text/plain"})) for o in breakdown] == [
        "text/html", "image/svg+xml", "image/svg+xml"
    ], "the totals table, then each chart as an image"  # fmt: skip
    size = len(json.dumps(breakdown)) + sum(len(json.dumps(state[o.data[WIDGET_MIME]["model_id"]])) for o in breakdown)
    assert size <= 300_000, f"a breakdown takes {size:,} bytes in the saved notebook"
    assert (tmp_path / "build" / "01_quickstart.ipynb").stat().st_size < 1_000_000

    # the user's own export, with the network off: the widget state left out, every output's twin shows
    offline = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--output-dir",
         str(tmp_path / "offline"), "--ClearMetadataPreprocessor.enabled=True", str(tmp_path / "build" / "01_quickstart.ipynb")],
        env=env, check=False, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if offline.returncode != 0 and "unshare" in offline.stderr:
        pytest.skip(f"no network namespace here: {offline.stderr.strip()}")
    assert offline.returncode == 0, offline.stderr
    assert static_views_shown((tmp_path / "offline" / "01_quickstart.html").read_text(encoding="utf-8"))

    # a renderer that runs no JavaScript and sanitises HTML, as GitHub's notebook view does
    page = github_like(executed)
    assert "<script" not in page and "style=" not in page and WIDGET_MIME not in page
    assert "Quickstart budget" in page and "of $0.0100" in page, "the budget panel's limits, as text"
    assert page.count('<img src="data:image/svg+xml;base64,') == 2, "the breakdown's two charts"
    assert "triage" in page and "summarize" in page and "01_quickstart" in page
    assert re.search(r"\$0\.000\d+", page), "costs, as numbers"
    if os.environ.get("PAYI_UPDATE_SCREENSHOT") == "1":  # the README's pictures of both static views
        shots = tmp_path / "github-like.html"
        shots.write_text(f"<html><body style='font-family:sans-serif;max-width:960px'>{page}</body></html>")
        picture(tmp_path / "offline" / "01_quickstart.html", REPO / "docs" / "nbconvert-offline.png")
        picture(shots, REPO / "docs" / "github-like.png")


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def picture(page: Path, out: Path) -> None:
    """A screenshot of a local page, offline and with JavaScript off, scrolled to the breakdown."""
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            view = browser.new_context(
                java_script_enabled=False, offline=True, viewport={"width": 1000, "height": 1100}
            )
            tab = view.new_page()
            tab.goto(page.as_uri())
            tab.locator("text=budgets").first.scroll_into_view_if_needed()
            tab.screenshot(path=str(out))
        finally:
            browser.close()


# GitHub's sanitiser keeps structure and text, drops scripts, styles, classes and data: URLs in HTML.
GITHUB_TAGS = {"a", "b", "i", "strong", "em", "code", "pre", "p", "br", "div", "span", "table", "thead", "tbody",
               "tr", "th", "td", "img", "ul", "ol", "li", "h1", "h2", "h3", "h4", "sub", "sup", "details", "summary"}  # fmt: skip
GITHUB_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt", "width", "height"}, "th": {"align"}, "td": {"align"}}


def github_like(nb: Any) -> str:
    """The notebook's outputs as a JS-free renderer shows them: the widget views ignored, each
    output's best static type chosen, HTML through an allowlist sanitiser, images as images."""
    import base64

    import nh3

    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data:
                parts.append(nh3.clean(data["text/html"], tags=GITHUB_TAGS, attributes=GITHUB_ATTRIBUTES,
                                       url_schemes={"http", "https", "mailto"}))  # fmt: skip
            elif "image/svg+xml" in data:
                picture = base64.b64encode(data["image/svg+xml"].encode()).decode()
                parts.append(f'<img src="data:image/svg+xml;base64,{picture}">')
            elif "text/plain" in data or "text" in output:
                parts.append(f"<pre>{html.escape(data.get('text/plain') or output.get('text', ''))}</pre>")
    return "\n".join(parts)


def static_views_shown(page: str) -> bool:
    """An nbconvert page shows our static twins: both charts as images, the budget's limits and the table."""
    assert "application/vnd.jupyter.widget-state+json" not in page and WIDGET_MIME not in page
    assert page.count('src="data:image/svg+xml;base64,') == 2, "both breakdown charts, as images"
    assert "Quickstart budget" in page and "of $0.0100" in page, "the budget panel's limits, as text"
    assert "payi-breakdown-static" in page and "triage" in page
    return True


def test_demo_names_the_failing_cell(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("# divide\n1 / 0")]
    )
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    done = subprocess.run(
        [sys.executable, "-m", "payi_notebook.demo", "--notebook", str(path), "--out", str(tmp_path / "build")],
        env=clean_env(), cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("demo: error: broken.ipynb: cell 2 ('# divide') raised ZeroDivisionError: division by zero")
    ), done.stderr
    partial = nbformat.read(tmp_path / "build" / "broken.ipynb", as_version=4)
    assert partial.cells[0].execution_count == 1


def test_demo_refuses_a_missing_notebook(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "payi_notebook.demo", "--notebook", str(tmp_path / "nope.ipynb")],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "no notebook at" in done.stderr and "--notebook PATH" in done.stderr


def test_execute_uses_the_given_python_not_a_user_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user-level ``python3`` kernelspec pointing elsewhere must not take over the kernel."""
    user_kernel = tmp_path / "jupyter-data" / "kernels" / "python3"
    user_kernel.mkdir(parents=True)
    (user_kernel / "kernel.json").write_text(
        json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "hijack", "language": "python"})
    )  # fmt: skip
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    path = tmp_path / "which.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    executed = execute(path, clean_env(), timeout=60)
    assert text(executed.cells[0]).strip() == sys.executable


def test_notebook_error_keeps_what_ran(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print('ran')"), nbformat.v4.new_code_cell("raise KeyError('k')")]
    )
    path = tmp_path / "err.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError) as caught:
        execute(path, clean_env(), timeout=60)
    assert str(caught.value) == """err.ipynb: cell 2 ("raise KeyError('k')") raised KeyError: 'k'"""
    assert text(caught.value.notebook.cells[0]) == "ran\n"


def test_summary_needs_both_calls() -> None:
    proxied = {"source": "proxy", "category": "system.openai", "resource": "gpt-4o-mini",
               "units": {"text": {"input": 10, "output": 20}}, "cost": {"total": 0.5}, "context": {}}  # fmt: skip
    with pytest.raises(LookupError, match="not an ingested Anthropic call"):
        summary([proxied])
