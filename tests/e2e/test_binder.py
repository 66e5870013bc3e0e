"""binder/ alone is enough: a fresh virtual environment built from it runs the quickstart with no keys.

What repo2docker does, step by step: a copy of the repository, ``pip install -r
binder/requirements.txt`` from its root, ``binder/postBuild`` if there is one, then
``binder/start <command>``; the command here executes ``notebooks/01_quickstart.ipynb`` with
that environment's own Jupyter. Slow (pip), so it prints its timings to the terminal whatever
pytest captures; pip's cache keeps it to about a minute where ``make test`` has just filled it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

import payi_notebook.sandbox as sandbox_pkg
from payi_notebook.demo import errors

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"
)


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """A new user's environment: own HOME (no kernelspecs, no Jupyter config), no Pay-i or provider keys."""
    drop = ("PAYI_", "JUPYTER", "JPY_", "VIRTUAL_ENV", "PYTHONPATH")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))  # the user's cache, not the new HOME's
    env["HOME"] = str(home)
    env.update(extra)
    return env


def step(
    what: str, command: list[str], timings: dict[str, float], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    started = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    timings[what] = time.perf_counter() - started
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def test_binder_environment_runs_the_quickstart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=NOT_SHIPPED)
    home, data, out = tmp_path / "home", tmp_path / "data", tmp_path / "out"
    home.mkdir()
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    timings: dict[str, float] = {}

    step("venv", [sys.executable, "-m", "venv", str(venv)], timings)
    env = fresh_env(home, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PAYI_NOTEBOOK_DATA_DIR=str(data))
    step("pip install -r binder/requirements.txt",
         [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
         timings, cwd=repo, env=env, timeout=600)  # fmt: skip
    if (repo / "binder" / "postBuild").exists():
        step("binder/postBuild", [str(repo / "binder" / "postBuild")], timings, cwd=repo, env=env, timeout=300)
    command = [
        str(repo / "binder" / "start"),
        str(bin_dir / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
        "--ExecutePreprocessor.store_widget_state=True", "--ExecutePreprocessor.timeout=180",
        "--output-dir", str(out), "notebooks/01_quickstart.ipynb",
    ]  # fmt: skip
    done = step(
        "binder/start jupyter nbconvert --execute 01_quickstart", command, timings, cwd=repo, env=env, timeout=300
    )
    with capsys.disabled():
        print("\n[binder, slow] " + ", ".join(f"{what}: {seconds:.1f} s" for what, seconds in timings.items()))

    assert "binder/start: no PAYI_API_KEY, so notebooks use the local Pay-i sandbox" in done.stdout
    lines = dict(line.split("=", 1) for line in (data / "sandbox.env").read_text().splitlines())
    assert set(lines) == {"PAYI_BASE_URL", "PAYI_API_KEY", "PAYI_SANDBOX_PROVIDER_URL"}

    executed = nbformat.read(out / "01_quickstart.ipynb", as_version=4)
    assert errors(executed) == []
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")
    status = next(c for c in executed.cells if c.cell_type == "code" and c.source == "%payi status")
    assert f"sandbox at {lines['PAYI_BASE_URL']}" in status.outputs[0]["data"]["text/plain"], (
        "the kernel used start's sandbox"
    )
    load = executed.cells[1]
    assert load.source == "%load_ext payi_notebook" and load.outputs == [], "no second sandbox was spawned"

    deadline = time.monotonic() + 10
    while port_open(lines["PAYI_BASE_URL"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_open(lines["PAYI_BASE_URL"]), "the sandbox outlived the command binder/start ran"

    with sandbox_pkg.start(db=data / "sandbox.db") as reopened:  # what it stored, read back from its database
        events = reopened.events()
    assert len(events) == 6 and sum(e["source"] == "proxy" for e in events) == 1
    assert all(e["cost"]["total"] > 0 for e in events)


def test_start_changes_nothing_when_a_pay_i_key_is_set(tmp_path: Path) -> None:
    env = fresh_env(
        tmp_path, PAYI_API_KEY="pk-user", PAYI_BASE_URL="https://api.pay-i.com", PATH=os.environ.get("PATH", "")
    )
    done = subprocess.run(
        [str(REPO / "binder" / "start"), "sh", "-c", 'echo "$PAYI_BASE_URL ${PAYI_SANDBOX_PROVIDER_URL:-none} $#" "$@"', "-", "a b"],
        env=env, check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "https://api.pay-i.com none 1 a b\n"
    assert not (tmp_path / ".payi_notebook").exists()
