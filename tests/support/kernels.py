"""Real Jupyter kernels for tests: this environment's Python (``demo.kernel_manager``, so no user
kernelspec can hijack it), an explicit environment, no front end.

``run_notebook`` executes cells top to bottom with nbclient; ``Kernel`` keeps one kernel
alive across ``execute`` calls (to kill it mid-work, for instance).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from payi_notebook.demo import kernel_manager


def kernel_env(sandbox: Any, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a kernel whose calls go to ``sandbox``, with its own data dir (spool)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYI_")}
    env.update(
        PAYI_API_KEY=sandbox.api_key,
        PAYI_BASE_URL=sandbox.base_url,
        PAYI_SANDBOX_PROVIDER_URL=sandbox.provider_url,
        PAYI_NOTEBOOK_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def notebook(cells: list[str]) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])


def run_notebook(nb: nbformat.NotebookNode, env: dict[str, str], cwd: Path, timeout: int = 120) -> nbformat.NotebookNode:
    """Execute ``nb`` in a fresh kernel; raises nbclient's CellExecutionError naming the failing cell."""
    client = NotebookClient(
        nb,
        km=kernel_manager(),
        timeout=timeout,
        resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True,
    )
    client.execute(env=env)
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    """Everything a cell showed, as text (streams, plain-text reprs, error names and messages)."""
    parts: list[str] = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        else:
            parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


class Kernel:
    """One live kernel: ``execute`` returns the text a cell printed; ``kill`` ends it with SIGKILL."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.manager = kernel_manager()
        self.manager.start_kernel(env=env, cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(self, code: str, timeout: float = 60) -> str:
        """Run ``code``; return what it printed to stdout and displayed (not stderr, where logs go).

        Raise AssertionError with the traceback if it failed.
        """
        chunks: list[str] = []
        errors: list[str] = []

        def collect(message: dict[str, Any]) -> None:
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                chunks.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                chunks.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError(f"cell failed:\n{code}\n{''.join(errors)}")
        return "".join(chunks)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no atexit, no flush."""
        self.client.stop_channels()
        self.manager.signal_kernel(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.manager.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.manager.is_alive(), "the kernel survived SIGKILL"
        self.manager.cleanup_resources()

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def flush_all(kernel: Kernel, timeout: float = 60) -> str:
    """``pn.flush`` in ``kernel`` (the extension loaded); assert nothing failed or stayed pending."""
    report = kernel.execute(f"import payi_notebook as pn\nprint(pn.flush({timeout}))", timeout=timeout + 30)
    assert "0 failed" in report and "pending" not in report, report
    return report


def recover(env: dict[str, str], cwd: Path) -> None:
    """What a restarted kernel does with journals left behind: load the extension, send them all."""
    kernel = Kernel(env, cwd)
    try:
        kernel.execute("%load_ext payi_notebook")
        flush_all(kernel)
    finally:
        kernel.shutdown()
