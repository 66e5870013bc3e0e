"""The badge under a running cell: shown once the cell has made calls, updated in place while it
runs (never more often than every 0.5 s), and replaced in place by the final badge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.kernels import Kernel, kernel_env

pytestmark = pytest.mark.timeout(240)

SETUP = (
    "import time\n"
    "import payi_notebook as pn\n"
    "from openai import OpenAI\n"
    "oa = OpenAI(base_url=pn.emulator_url() + '/v1', api_key='sk-live', max_retries=0)\n"
    "MSG = [{'role': 'user', 'content': 'Summarise our quarterly numbers in one line.'}]"
)
CELL = (
    "%%payi --use-case live --budget 0.01\n"
    "for i in range(12):\n"
    "    oa.chat.completions.create(model='gpt-4o-mini', messages=MSG, max_tokens=64)\n"
    "    time.sleep(0.25)"
)


def test_the_badge_updates_while_the_cell_runs(sandbox: Any, tmp_path: Path) -> None:
    kernel = Kernel(kernel_env(sandbox, tmp_path / "data"), tmp_path)
    try:
        kernel.execute("%load_ext payi_notebook")
        kernel.execute(SETUP)
        seen: list[tuple[str, str, str | None, float]] = []

        def hook(message: dict[str, Any]) -> None:
            kind, content = message["header"]["msg_type"], message["content"]
            if kind in ("display_data", "update_display_data"):
                text = content["data"].get("text/plain", "")
                if text.startswith("payi"):
                    display_id = content.get("transient", {}).get("display_id")
                    seen.append((kind, text, display_id, message["header"]["date"].timestamp()))

        reply = kernel.client.execute_interactive(CELL, timeout=120, output_hook=hook)
        assert reply["content"]["status"] == "ok"
    finally:
        kernel.shutdown()
    shown = [s for s in seen if s[0] == "display_data"]
    assert len(shown) == 1 and shown[0][1].startswith("payi (running)"), seen  # one badge, shown while running
    display_id = shown[0][2]
    updates = [s for s in seen if s[0] == "update_display_data"]
    assert updates and all(s[2] == display_id for s in updates)  # every update lands on that one badge
    running = [s for s in updates if s[1].startswith("payi (running)")]
    assert running, "no update while the cell ran"
    assert "cell budget $0.0" in running[-1][1] and "/min" in running[-1][1]  # budget bar and spend rate
    final = updates[-1][1]
    assert final.startswith("payi · 12 calls") and "cell budget" in final
    times = [s[3] for s in [shown[0], *running]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= 0.45 for gap in gaps), gaps  # at most one update per interval
