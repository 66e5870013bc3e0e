"""The quickstart seen in a real browser: JupyterLab and Notebook 7 driven through Debian's chromium.

The server serves a copy of ``01_quickstart.ipynb`` on a loopback port, with a throwaway token
and its own config, data, settings and runtime folders (plus our settings override that saves
widget state); its kernels are this Python, pointed at a test sandbox. Playwright drives
``/usr/bin/chromium`` (never a downloaded browser). The checks: every cell runs; the breakdown's
bars are drawn (one ``.payi-mark`` per use case); a new call adds a bar; re-running the
breakdown cell keeps the websocket traffic flat (bytes per breakdown measured); after a page
reload the bars are drawn again from the kernel and a new call still updates them; the budget
panel's Set max reaches Pay-i; the saved notebook reopened by a new server in a new page, with
a new kernel that holds none of the widgets' models, draws them from the saved widget state,
never "model not found". Any console error or uncaught
page error fails. Screenshots go to ``build/``; with ``PAYI_UPDATE_SCREENSHOT=1`` they also
replace the ones in ``docs/`` (the README's), so ordinary runs leave the tree clean. Without a
chromium binary the tests are skipped with a message saying how to install one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from payi_notebook.demo import sandbox_env

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("PAYI_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]
NEW_MAX = 0.02
# Lab settings for an unattended, offline run: every cell in the DOM (no windowing), no news or
# update checks (they would reach out to the internet and pop up a notification).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}
NOTEBOOK_JS = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
SETTINGS_OVERRIDE = REPO / "jupyter-config" / "payi_notebook.json"
BREAKDOWN_MS = 1000  # first breakdown of the page: execute to bars drawn
BREAKDOWN_BYTES = 300_000
KERNEL_READY = f"""() => {{
    const nb = {NOTEBOOK_JS};
    const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}}"""
ALL_CELLS_RAN = f"""() => {{
    const nb = {NOTEBOOK_JS};
    const code = nb.content.widgets.filter(cell => cell.model.type === 'code');
    return nb.sessionContext.session.kernel.status === 'idle'
        && code.every(cell => cell.model.executionCount !== null);
}}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str, token: str) -> bool:
    try:
        return httpx.get(f"{url}/api/status", headers={"Authorization": f"token {token}"}, timeout=2).is_success
    except httpx.TransportError:
        return False


@dataclass
class Server:
    app: str  # "lab" or "notebook"
    url: str
    token: str
    log: Path
    root: Path

    def notebook_url(self, name: str) -> str:
        path = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.url}/{path}/{name}?token={self.token}"


@pytest.fixture
def chromium() -> Path:
    """Debian's chromium, or a skip that says how to get it (checked before anything starts)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium) "
            "or set PAYI_TEST_CHROMIUM to a Chromium binary to run the real-browser check"
        )
    return CHROMIUM


@contextmanager
def jupyter(app: str, root: Path, tmp: Path, sandbox: Any) -> Iterator[Server]:
    """A Jupyter server (``lab`` or ``notebook``) on loopback serving ``root``."""
    kernel = tmp / "jupyter-path" / "kernels" / "python3"
    kernel.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernel / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    settings = tmp / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    app_settings = tmp / "app-settings"
    (app_settings / "overrides.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(SETTINGS_OVERRIDE, app_settings / "overrides.d" / SETTINGS_OVERRIDE.name)  # as pip installs it

    drop = ("PAYI_", "JUPYTER", "JPY_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    env.update(sandbox_env(sandbox))
    env.update(
        PAYI_NOTEBOOK_DATA_DIR=str(tmp / "payi-data"),
        JUPYTER_PATH=str(tmp / "jupyter-path"),  # first in the kernelspec search: no user kernelspec can win
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
        JUPYTER_DATA_DIR=str(root.parent / "jupyter-data"),  # shared: notebook trust is kept across servers
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
    )
    port, token = free_port(), secrets.token_hex(16)
    cls = "LabApp" if app == "lab" else "JupyterNotebookApp"
    command = [
        sys.executable, "-m", "jupyterlab" if app == "lab" else "notebook", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.allow_root=True", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--{cls}.expose_app_in_browser=True", f"--{cls}.user_settings_dir={settings}",
        f"--{cls}.app_settings_dir={app_settings}", f"--{cls}.workspaces_dir={tmp / 'lab-workspaces'}",
    ]  # fmt: skip
    if app == "notebook":  # Notebook 7 reads its settings through JupyterLab's handler when both are installed
        command += [f"--LabApp.user_settings_dir={settings}", f"--LabApp.app_settings_dir={app_settings}"]
    log = tmp / f"{app}-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"{app} exited ({server.returncode}):\n{log.read_text()[-3000:]}"
            if answers(url, token):
                break
            assert time.monotonic() < deadline, f"{app} did not answer within 120 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield Server(app, url, token, log, root)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def limit_max(sandbox: Any, limit_id: str) -> float | None:
    response = httpx.get(
        f"{sandbox.base_url}/api/v1/limits/{limit_id}", headers={"xProxy-api-key": sandbox.api_key}, timeout=10
    )
    return response.json()["limit"]["max"] if response.status_code == 200 else None


class Wire:
    """Bytes the page receives over its kernel websockets."""

    def __init__(self, page: Any) -> None:
        self.received = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: str | bytes) -> None:
        self.received += len(payload.encode() if isinstance(payload, str) else payload)


def marks(page: Any, cell: int) -> int:
    """Plotted bars in the breakdown shown by code cell ``cell`` (negative: from the end)."""
    return page.evaluate(
        f"""() => {{
        const cells = {NOTEBOOK_JS}.content.widgets.filter(c => c.model.type === 'code');
        const cell = cells.at({cell});
        return cell ? cell.node.querySelectorAll('.payi-bars .payi-mark').length : -1;
    }}"""
    )


def run_new_cell(page: Any, source: str) -> None:
    """Append a code cell with ``source`` at the end and run it (the kernel must be idle)."""
    page.evaluate(
        f"""async () => {{
        const app = window.jupyterapp, nb = {NOTEBOOK_JS};
        nb.content.activeCellIndex = nb.content.widgets.length - 1;
        await app.commands.execute('notebook:insert-cell-below');
        nb.content.activeCell.model.sharedModel.setSource({json.dumps(source)});
        await app.commands.execute('notebook:run-cell');
    }}"""
    )


def wait_idle(page: Any) -> None:
    page.wait_for_function(
        f"() => {NOTEBOOK_JS}.sessionContext.session.kernel.status === 'idle'", timeout=120_000, polling=250
    )
    page.wait_for_function(ALL_CELLS_RAN, timeout=240_000, polling=250)


def open_notebook(browser: Any, server: Server, problems: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: None if known(exc) else problems.append(f"page error: {exc}\n{exc.stack}"))
    page.on("requestfailed", lambda r: failed(r, problems))
    return page


def known(exc: Any) -> bool:
    """Notebook 7.6's own keyboard-shortcut plugin failing on load; it does so for an empty notebook too."""
    return "reading 'schema'" in str(exc) and "/static/notebook/notebook_core." in (exc.stack or "")


def failed(request: Any, problems: list[str]) -> None:
    """A failed request is a problem, except one a page reload cancels on its way (``ERR_ABORTED``)."""
    if "ERR_ABORTED" not in str(request.failure):
        problems.append(f"request failed: {request.url} ({request.failure})")


def save(page: Any, path: Path, expected: str) -> None:
    """Save the notebook and wait until the file on disk holds ``expected`` and the widget state."""
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8")
        if expected in text and "application/vnd.jupyter.widget-state+json" in text:
            return
        time.sleep(0.25)
    raise AssertionError(f"the saved notebook lacks {expected!r} or the widget state")


def screenshot(page: Any, name: str) -> Path:
    shot = REPO / "build" / name
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot))
    if os.environ.get("PAYI_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / name)
    return shot


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_quickstart_survives_reload_and_reopen(chromium: Path, sandbox: Any, tmp_path: Path, app: str) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "01_quickstart.ipynb", root)
    httpx.delete(  # the quickstart creates its budget afresh in each front end's run
        f"{sandbox.base_url}/api/v1/limits/quickstart", headers={"xProxy-api-key": sandbox.api_key}, timeout=10
    )
    problems: list[str] = []
    reopened: list[str] = []  # the same, from the page with no kernel
    figures: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
        try:
            with jupyter(app, root, tmp_path / "live", sandbox) as server:
                page = open_notebook(browser, server, problems)
                wire = Wire(page)
                page.goto(server.notebook_url("01_quickstart.ipynb"))
                page.wait_for_function(KERNEL_READY, timeout=120_000)
                if app == "lab":
                    page.evaluate(
                        "() => window.jupyterapp.shell.leftCollapsed"
                        " || window.jupyterapp.commands.execute('application:toggle-left-area')"
                    )
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                wait_idle(page)
                breakdown_cell = page.evaluate(
                    f"() => {NOTEBOOK_JS}.content.widgets.filter(c => c.model.type === 'code')"
                    ".findIndex(c => c.model.sharedModel.getSource().startsWith('%payi breakdown'))"
                )
                assert breakdown_cell >= 0
                deadline = time.monotonic() + 30
                while marks(page, breakdown_cell) < 3 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert marks(page, breakdown_cell) == 3, "one bar per use case: 01_quickstart, summarize, triage"

                # the budget panel acts on Pay-i
                panel = page.locator(".payi-budget")
                panel.wait_for(state="visible", timeout=30_000)
                row = panel.locator(".widget-hbox", has=page.locator(".payi-limit", has_text="Quickstart budget")).last
                assert "allow" in row.inner_text() and "$0.01" in row.inner_text()
                field = row.locator("input[type=number]")
                field.fill(str(NEW_MAX))
                field.press("Enter")
                row.get_by_role("button", name="Set max").click()
                deadline = time.monotonic() + 30
                while limit_max(sandbox, "quickstart") != NEW_MAX and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert limit_max(sandbox, "quickstart") == NEW_MAX, "the panel's Set max did not reach Pay-i"
                if app == "lab":
                    panel.evaluate("element => element.closest('.jp-Cell').scrollIntoView({block: 'start'})")
                    page.wait_for_timeout(300)
                    screenshot(page, "quickstart.png")

                # a new breakdown: time to drawn and bytes on the wire; re-runs keep the traffic flat
                costs = []
                for run in range(3):
                    before, started = wire.received, time.monotonic()
                    if run == 0:
                        run_new_cell(page, "%payi breakdown --by model")
                    else:
                        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
                    page.wait_for_function(
                        f"() => {NOTEBOOK_JS}.content.activeCell.node.querySelectorAll('.payi-bars .payi-mark').length"
                        " >= 2 && " + f"{NOTEBOOK_JS}.sessionContext.session.kernel.status === 'idle'",
                        timeout=60_000, polling=20,
                    )  # fmt: skip
                    costs.append((time.monotonic() - started, wire.received - before))
                figures["drawn_s"], figures["bytes"] = costs[0]
                figures["rerun_bytes"] = [b for _, b in costs[1:]]
                print(
                    f"{app}: new breakdown drawn in {costs[0][0] * 1000:.0f} ms, {costs[0][1]:,} bytes; re-runs {costs}"
                )
                assert costs[0][1] <= BREAKDOWN_BYTES, f"a breakdown moved {costs[0][1]:,} bytes"
                assert max(b for _, b in costs[1:]) <= 1.5 * min(b for _, b in costs), f"traffic grows: {costs}"

                # a new call updates the first breakdown
                run_new_cell(page, SAMPLE_CALL.format(use_case="after-run"))
                deadline = time.monotonic() + 60
                while marks(page, breakdown_cell) < 4 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert marks(page, breakdown_cell) == 4, "the new use case got its bar"

                # reload: the bars come back from the kernel and keep updating
                save(page, root / "01_quickstart.ipynb", "after-run")
                page.reload()
                page.wait_for_function(KERNEL_READY, timeout=120_000)
                deadline = time.monotonic() + 60
                while marks(page, breakdown_cell) < 4 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert marks(page, breakdown_cell) == 4, "after a reload the bars are drawn again"
                page.locator(".payi-bars").first.evaluate(
                    "element => element.closest('.jp-Cell').scrollIntoView({block: 'start'})"
                )
                page.wait_for_timeout(300)
                screenshot(page, f"reloaded-{app}.png")
                run_new_cell(page, SAMPLE_CALL.format(use_case="after-reload"))
                deadline = time.monotonic() + 60
                while marks(page, breakdown_cell) < 5 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert marks(page, breakdown_cell) == 5, "after a reload a new call still updates the bars"
                wait_idle(page)
                save(page, root / "01_quickstart.ipynb", "after-reload")
                page.close()

            # reopened: a new server, a new page, a new kernel that holds none of the widgets' models
            with jupyter(app, root, tmp_path / "reopen", sandbox) as server:
                page = open_notebook(browser, server, reopened)
                page.goto(server.notebook_url("01_quickstart.ipynb"))
                page.wait_for_function(
                    f"() => {NOTEBOOK_JS} && {NOTEBOOK_JS}.content && {NOTEBOOK_JS}.content.widgets.length > 10",
                    timeout=120_000,
                )
                deadline = time.monotonic() + 60
                while marks(page, breakdown_cell) < 5 and time.monotonic() < deadline:
                    time.sleep(0.2)
                text = page.locator("body").inner_text()
                assert "model not found" not in text
                assert marks(page, breakdown_cell) == 5, "the saved breakdown draws its bars with no kernel"
                assert "Quickstart budget" in text and "after-reload" in text
                page.locator(".payi-bars").first.evaluate(
                    "element => element.closest('.jp-Cell').scrollIntoView({block: 'start'})"
                )
                page.wait_for_timeout(300)
                screenshot(page, f"reopened-{app}.png")
                page.close()  # before the server stops: else its kernel socket's refused reconnect is logged
        finally:
            browser.close()
    print(f"{app}: first new breakdown drawn in {figures['drawn_s'] * 1000:.0f} ms, {figures['bytes']:,} bytes; "
          f"re-runs {figures['rerun_bytes']}")  # fmt: skip
    assert problems == [], "the browser reported problems:\n" + "\n".join(problems)
    assert reopened == [], "the reopened page reported problems:\n" + "\n".join(reopened)
    load = max(1.0, min(os.getloadavg()[0] / (os.cpu_count() or 1), 5.0))  # other work on the machine
    assert figures["drawn_s"] * 1000 <= BREAKDOWN_MS * load, (
        f"breakdown drawn after {figures['drawn_s']:.2f} s (allowed {BREAKDOWN_MS * load / 1000:.1f} s at this load)"
    )


SAMPLE_CALL = """%%payi --use-case {use_case}
anthropic_client.messages.create(
    model="claude-haiku-4-5", max_tokens=50, messages=[{{"role": "user", "content": "hi"}}]
)
"""
