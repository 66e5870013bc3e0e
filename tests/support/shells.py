"""A real IPython shell with the extension loaded, for tests that run cells in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn


def run(ip: InteractiveShell, code: str) -> Any:
    """Run a cell as a notebook would (history on), returning IPython's ExecutionResult."""
    return ip.run_cell(code, store_history=True)


def ok(ip: InteractiveShell, code: str) -> Any:
    """Run a cell that must succeed; return its value."""
    result = run(ip, code)
    assert result.success, f"cell failed: {result.error_before_exec or result.error_in_exec!r}"
    return result.result


def rows() -> Any:
    return pn.ledger().df


def loaded_shell(sandbox: Any, setup: str) -> Iterator[InteractiveShell]:
    """The shell with ``PROVIDER_URL`` set, ``%load_ext payi_notebook`` and ``setup`` run; unloads after."""
    ip = InteractiveShell.instance()
    ip.user_ns["PROVIDER_URL"] = sandbox.provider_url
    ok(ip, "%load_ext payi_notebook")
    ok(ip, setup)
    yield ip
    ok(ip, "%unload_ext payi_notebook")
