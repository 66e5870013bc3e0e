"""``python -m payi_notebook.demo``: run the quickstart notebook for real and say what it cost.

Starts a local sandbox (Pay-i API + provider emulator), executes ``notebooks/01_quickstart.ipynb``
top to bottom in a real kernel of this Python pointed at it, writes the executed notebook and
an HTML report that opens offline (each output's static table or chart) under ``build/``,
and prints what the sandbox priced:
the OpenAI chat completion that went through the Pay-i proxy and the Anthropic message that
was ingested as telemetry. ``execute`` is also what the tests and the binder check use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "notebooks" / "01_quickstart.ipynb"
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


class NotebookError(RuntimeError):
    """A notebook did not run to the end; the message names the cell and the error."""

    def __init__(self, message: str, notebook: Any) -> None:
        super().__init__(message)
        self.notebook = notebook


def kernel_manager(python: str = sys.executable, workdir: str | Path | None = None) -> Any:
    """A kernel manager whose kernel runs ``python``, whatever kernelspecs the user has installed.

    The kernelspec is written to ``workdir`` (a new temporary folder if None), so a user-level
    ``python3`` kernelspec pointing at another interpreter cannot take over.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="payi-kernelspec-"))
    spec_dir = root / "kernels" / "payi-python"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (payi_notebook)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="payi-python", kernel_spec_manager=specs)


def kernel_env(
    notebook: str | Path, payi: Mapping[str, str], data_dir: str | Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The kernel's environment: ``base`` (default: ours) plus the Pay-i endpoint and the notebook's name.

    ``JPY_SESSION_NAME`` is what Jupyter Server sets, so the notebook's name becomes the default use case.
    """
    env = dict(os.environ if base is None else base)
    env.update(payi)
    env["PAYI_NOTEBOOK_DATA_DIR"] = str(data_dir)
    env["JPY_SESSION_NAME"] = str(Path(notebook).resolve())
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences a debugger warning on frozen modules
    return env


def sandbox_env(sandbox: Any) -> dict[str, str]:
    """The three variables that point a kernel at ``sandbox`` (as ``python -m payi_notebook.sandbox`` prints them)."""
    return {
        "PAYI_BASE_URL": sandbox.base_url,
        "PAYI_API_KEY": sandbox.api_key,
        "PAYI_SANDBOX_PROVIDER_URL": sandbox.provider_url,
    }


def execute(
    notebook: str | Path,
    env: Mapping[str, str],
    timeout: float = 120,
    python: str = sys.executable,
) -> Any:
    """Run ``notebook`` top to bottom in a fresh kernel of ``python``; return the executed notebook.

    Widget state is stored in the notebook's metadata, so an HTML export shows the widgets.
    A failing cell raises ``NotebookError`` naming the cell; its ``notebook`` holds what ran.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="payi-kernelspec-") as specs:
        client = NotebookClient(
            nb,
            km=kernel_manager(python, specs),
            timeout=timeout,
            store_widget_state=True,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # the kernel's own plumbing warnings, not the cells'
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        try:
            client.execute(env=dict(env))
        except CellExecutionError:
            raise NotebookError(f"{path.name}: {_failed_cell(nb)}", nb) from None
        except CellTimeoutError:
            raise NotebookError(
                f"{path.name}: a cell ran longer than {timeout:.0f} s; {_running_cell(nb)}", nb
            ) from None
        except DeadKernelError as exc:
            raise NotebookError(f"{path.name}: the kernel died ({exc}); {_running_cell(nb)}", nb) from None
    return nb


def _first_line(cell: Any) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip()]
    return lines[0][:80] if lines else "(empty)"


def _failed_cell(nb: Any) -> str:
    for index, cell in enumerate(nb.cells, 1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index} ({_first_line(cell)!r}) raised {output['ename']}: {output['evalue']}"
    return "a cell raised an error"


def _running_cell(nb: Any) -> str:
    code = [(i, c) for i, c in enumerate(nb.cells, 1) if c.cell_type == "code"]
    pending = [(i, c) for i, c in code if c.get("execution_count") is None]
    if not pending:
        return "every cell had started"
    index, cell = pending[0]
    return f"stopped at or before cell {index} ({_first_line(cell)!r})"


def errors(nb: Any) -> list[str]:
    """Every error output in ``nb``, as ``"cell N: ENAME: evalue"``."""
    found = []
    for index, cell in enumerate(nb.cells, 1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output['ename']}: {output['evalue']}")
    return found


def export_html(nb: Any, path: str | Path) -> Path:
    """Write ``nb`` as an HTML report that needs no network: every output as its static twin.

    The widget state is left out of the copy that is exported, so nbconvert picks each
    output's HTML table or SVG chart instead of a widget view that would need JavaScript
    from a CDN (``jupyter nbconvert --ClearMetadataPreprocessor.enabled=True`` does the same).
    """
    import copy

    from nbconvert import HTMLExporter

    static = copy.deepcopy(nb)
    static.metadata.pop("widgets", None)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(static)
    out = Path(path)
    out.write_text(body, encoding="utf-8")
    return out


def _tokens(units: Mapping[str, Any], side: str) -> int:
    return sum(int(unit.get(side, 0)) for unit in units.values() if isinstance(unit, Mapping))


def _describe(event: Mapping[str, Any]) -> str:
    units = event.get("units") or {}
    cost = (event.get("cost") or {}).get("total", 0.0)
    return f"{event.get('resource')}, {_tokens(units, 'input')} in / {_tokens(units, 'output')} out tokens, ${cost:.6f}"


def summary(events: Sequence[Mapping[str, Any]]) -> str:
    """What the sandbox recorded: the proxied OpenAI chat, the ingested Anthropic message, totals by use case.

    Raises ``LookupError`` if either of the two calls the quickstart must make is missing.
    """
    proxied = [e for e in events if e.get("source") == "proxy" and e.get("category") == "system.openai"]
    ingested = [e for e in events if e.get("source") in ("ingest", "bulk") and e.get("category") == "system.anthropic"]
    if not proxied or not ingested:
        missing = [
            what
            for what, found in (("a proxied OpenAI call", proxied), ("an ingested Anthropic call", ingested))
            if not found
        ]
        raise LookupError(f"the sandbox recorded {len(events)} events but not {' or '.join(missing)}")
    total = sum((e.get("cost") or {}).get("total", 0.0) for e in events)
    by_use_case: dict[str, float] = defaultdict(float)
    for event in events:
        name = (event.get("context") or {}).get("use_case_name") or "(none)"
        by_use_case[name] += (event.get("cost") or {}).get("total", 0.0)
    lines = [
        f"Pay-i (local sandbox) recorded {len(events)} calls, ${total:.6f} in all:",
        f"  OpenAI chat completion via the Pay-i proxy: {_describe(proxied[0])}",
        f"  Anthropic message via telemetry ingest:     {_describe(ingested[0])}",
        "  by use case: " + ", ".join(f"{name} ${cost:.6f}" for name, cost in sorted(by_use_case.items())),
    ]
    return "\n".join(lines)


def run(notebook: Path, out_dir: Path, timeout: float) -> str:
    """Execute ``notebook`` against a fresh sandbox, write the outputs, return the summary."""
    import nbformat

    from . import sandbox as sandbox_mod

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    with tempfile.TemporaryDirectory(prefix="payi-demo-") as data, sandbox_mod.start() as sandbox:
        env = kernel_env(notebook, sandbox_env(sandbox), data)
        started = time.perf_counter()
        try:
            nb = execute(notebook, env, timeout=timeout)
        except NotebookError as exc:
            nbformat.write(exc.notebook, executed)
            raise NotebookError(f"{exc} (what ran is in {executed})", exc.notebook) from None
        elapsed = time.perf_counter() - started
        nbformat.write(nb, executed)
        html = export_html(nb, out_dir / f"{notebook.stem}.html")
        cells = sum(1 for c in nb.cells if c.cell_type == "code")
        report = summary(sandbox.events())
    used = [k for k in PROVIDER_KEYS if os.environ.get(k)]
    providers = (
        f"real providers for {', '.join(used)}"
        if used
        else "the provider emulator (no OPENAI_API_KEY / ANTHROPIC_API_KEY set)"
    )
    return (
        f"Ran {notebook.name}: {cells} code cells in {elapsed:.1f} s, no errors, calls went to {providers}.\n"
        f"{report}\n"
        f"Wrote {executed} (widgets included: open it in JupyterLab)\n"
        f"HTML report (opens offline, every table and chart visible): {html.resolve()}\n"
        f"Run it yourself, budget panel and all: {_shown(Path(sys.executable).parent / 'jupyter')} lab {_shown(notebook)}"
    )


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (shorter to copy)."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m payi_notebook.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=QUICKSTART, help="notebook to run (default: the quickstart)")
    parser.add_argument("--out", type=Path, default=Path("build"), help="folder for the executed notebook and HTML")
    parser.add_argument("--timeout", type=float, default=180, help="seconds one cell may take (default 180)")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        print(f"demo: error: no notebook at {args.notebook}; pass --notebook PATH", file=sys.stderr)
        return 2
    try:
        print(run(args.notebook, args.out, args.timeout))
    except (NotebookError, LookupError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
