"""Every ```python block of README.md runs as written: in order, one block per cell, in one real
kernel against the sandbox.

A hidden prelude cell runs first and defines what the README's prose says the reader brings:

- ``client``: ``openai.OpenAI`` at the provider emulator (``$PAYI_SANDBOX_PROVIDER_URL/v1``)
- ``aclient``: ``openai.AsyncOpenAI``, the same
- ``anthropic_client``: ``anthropic.Anthropic`` at the emulator
- ``messages``: a one-message chat list (``[{"role": "user", "content": ...}]``)

It imports nothing of ``payi_notebook``, so the README's own ``%load_ext`` / ``import`` come
first. Blocks that are not meant to run are fenced ```text or ```console, never ```python.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support.kernels import Kernel, kernel_env

pytestmark = pytest.mark.timeout(300)

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

PRELUDE = """\
import os as _os
from openai import AsyncOpenAI as _AsyncOpenAI, OpenAI as _OpenAI
from anthropic import Anthropic as _Anthropic

_url = _os.environ["PAYI_SANDBOX_PROVIDER_URL"]
client = _OpenAI(base_url=_url + "/v1", api_key="emulated")
aclient = _AsyncOpenAI(base_url=_url + "/v1", api_key="emulated")
anthropic_client = _Anthropic(base_url=_url, api_key="emulated")
messages = [{"role": "user", "content": "Summarise the quarterly report in two lines."}]
"""


def python_blocks() -> list[str]:
    return [match.group(1) for match in FENCE.finditer(README.read_text(encoding="utf-8"))]


def test_readme_python_blocks_have_no_placeholders() -> None:
    blocks = python_blocks()
    assert blocks, "README.md has no ```python block"
    for index, block in enumerate(blocks, 1):
        assert "..." not in block and "…" not in block, f"block {index} has a placeholder:\n{block}"


def test_every_readme_python_block_runs_in_one_kernel(sandbox: Any, tmp_path: Path) -> None:
    before = len(sandbox.events())
    kernel = Kernel(kernel_env(sandbox, tmp_path / "data"), tmp_path)
    try:
        kernel.execute(PRELUDE)
        for index, block in enumerate(python_blocks(), 1):
            try:
                kernel.execute(block, timeout=120)
            except AssertionError as exc:
                pytest.fail(f"README.md python block {index} failed:\n{exc}")
        rows = kernel.execute(  # calls a budget refused were never made: they have rows, and no event
            "import payi_notebook as _pn\n_df = _pn.ledger().df\n"
            "print(int((_df.status != 'refused_budget').sum()), _pn.flush(30).pending)"
        )
    finally:
        kernel.shutdown()
    count, pending = (int(word) for word in rows.split()[-2:])
    assert count > 0 and pending == 0, rows
    assert len(sandbox.events()) - before >= count, "every call the README makes reached the sandbox"
