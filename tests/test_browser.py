"""The quickstart seen in a real browser: a live JupyterLab driven through Debian's chromium.

JupyterLab serves a copy of ``01_quickstart.ipynb`` on a loopback port, with a throwaway token
and its own config, data, settings and runtime folders; its kernels are this Python, pointed at a
test sandbox. Playwright drives ``/usr/bin/chromium`` (never a downloaded browser): it runs
every cell, waits for the breakdown chart (plotly's SVG inside ``.payi-breakdown``) and the
budget panel (``.payi-budget``), raises the quickstart budget's max from the panel and checks
that Pay-i (the sandbox) now holds the new max. Any console error or uncaught page error fails
the test. The screenshot goes to ``build/quickstart.png``; with ``PAYI_UPDATE_SCREENSHOT=1`` it
also replaces ``docs/quickstart.png`` (the README's), so ordinary runs leave the tree clean.
Without a chromium binary the test is skipped with a message saying how to install one.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from payi_notebook.demo import sandbox_env

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent
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
class Lab:
    url: str
    token: str
    log: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"


@pytest.fixture
def chromium() -> Path:
    """Debian's chromium, or a skip that says how to get it (checked before anything starts)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium) "
            "or set PAYI_TEST_CHROMIUM to a Chromium binary to run the real-browser check"
        )
    return CHROMIUM


@pytest.fixture
def lab(chromium: Path, sandbox: Any, tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on loopback serving a copy of the quickstart; kernels of this Python go to ``sandbox``."""
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "01_quickstart.ipynb", root)
    kernel = tmp_path / "jupyter-path" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernel / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))

    drop = ("PAYI_", "JUPYTER", "JPY_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    env.update(sandbox_env(sandbox))
    env.update(
        PAYI_NOTEBOOK_DATA_DIR=str(tmp_path / "payi-data"),
        JUPYTER_PATH=str(tmp_path / "jupyter-path"),  # first in the kernelspec search: no user kernelspec can win
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
    )
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", "--ServerApp.allow_root=True", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
    ]  # fmt: skip
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-3000:]}"
            if answers(url, token):
                break
            assert time.monotonic() < deadline, f"JupyterLab did not answer within 60 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield Lab(url, token, log)
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


def test_quickstart_in_jupyterlab(chromium: Path, lab: Lab, sandbox: Any) -> None:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
            page.goto(lab.notebook_url("01_quickstart.ipynb"))
            page.wait_for_function(KERNEL_READY, timeout=90_000)
            page.evaluate(
                "() => window.jupyterapp.shell.leftCollapsed || window.jupyterapp.commands.execute('application:toggle-left-area')"
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_CELLS_RAN, timeout=120_000, polling=250)

            chart = page.locator(".payi-breakdown .js-plotly-plot .main-svg").first
            chart.wait_for(state="visible", timeout=30_000)
            bars = page.locator(".payi-breakdown .js-plotly-plot .bars .point")
            page.wait_for_function(
                "() => document.querySelectorAll('.payi-breakdown .js-plotly-plot .bars .point').length >= 3"
            )
            assert bars.count() == 3, "one bar per use case: 01_quickstart, summarize, triage"
            assert page.locator(".payi-breakdown").inner_text().count("triage") >= 1

            panel = page.locator(".payi-budget")
            panel.wait_for(state="visible", timeout=30_000)
            row = panel.locator(".widget-hbox", has=page.locator(".payi-limit", has_text="Quickstart budget")).last
            assert "allow" in row.inner_text() and "$0.01" in row.inner_text()
            field = row.locator("input[type=number]")
            field.fill(str(NEW_MAX))
            field.press("Enter")
            row.get_by_role("button", name="Set max").click()
            deadline = time.monotonic() + 15
            while limit_max(sandbox, "quickstart") != NEW_MAX and time.monotonic() < deadline:
                time.sleep(0.1)
            assert limit_max(sandbox, "quickstart") == NEW_MAX, "the panel's Set max did not reach Pay-i"
            page.wait_for_function(
                "() => document.querySelector('.payi-budget').innerText.includes('max of quickstart set to')"
            )

            panel.evaluate("element => element.closest('.jp-Cell').scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)  # let plotly finish its resize transition before the picture
            shot = REPO / "build" / "quickstart.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    if os.environ.get("PAYI_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "quickstart.png")
    assert shot.stat().st_size > 20_000
    assert problems == [], "the browser reported problems:\n" + "\n".join(problems)
