"""What the benchmarks share: the repo and ``tests/`` on the path (for ``support.events``, the one
event factory), the sandbox in a child process (``sandbox.process.spawn``, as the extension
starts it), and the preamble of the loopback benchmarks."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "tests", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from payi_notebook.sandbox.process import SandboxProcess, spawn  # noqa: E402  (needs the repo on the path)


def start_sandbox() -> tuple[SandboxProcess, dict[str, str]]:
    """A sandbox child on free loopback ports, and the environment that points a session at it."""
    sandbox = spawn()
    env = {
        "PAYI_BASE_URL": sandbox.base_url,
        "PAYI_API_KEY": sandbox.api_key,
        "PAYI_SANDBOX_PROVIDER_URL": sandbox.provider_url,
    }
    return sandbox, env


def loopback_run(doc: str | None, calls: int) -> tuple[argparse.Namespace, SandboxProcess, dict[str, str]]:
    """Parse ``--calls``, start the sandbox, point this process at it with a fresh data dir.

    Import ``payi_notebook`` only after this: the session reads the environment once.
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=calls, help=f"calls per variant (default {calls})")
    args = parser.parse_args()
    sandbox, env = start_sandbox()
    os.environ.update(env)
    os.environ["PAYI_NOTEBOOK_DATA_DIR"] = tempfile.mkdtemp(prefix="payi-bench-")
    return args, sandbox, env
