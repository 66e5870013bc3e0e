"""``%load_ext payi_notebook`` returns at once and the session starts on our thread: a call in
the very next cell (Run All) is still captured, and delivered exactly once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from support.kernels import notebook, run_notebook, text_of

CALL = """%%payi --use-case run-all --quiet
import openai
import payi_notebook as pn
reply = openai.OpenAI(base_url=f"{pn.emulator_url()}/v1", api_key="emulated").chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
)
print("response", reply.id)
"""

CHECK = """import json
print(pn.flush(60))
session = pn.get_session()
ids = [e.get("provider_response_id") for e in session.sandbox.events()]
print("state", json.dumps({"rows": len(pn.ledger()), "ids": ids, "row_id": pn.ledger().df.provider_response_id.tolist()}))
"""


def test_a_call_in_the_cell_right_after_load_is_captured_and_delivered_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYI_")}  # no key: our own sandbox starts
    env.update(PAYI_NOTEBOOK_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    nb = run_notebook(notebook(["%load_ext payi_notebook", CALL, CHECK]), env, tmp_path, timeout=180)
    loaded, called, checked = (text_of(cell) for cell in nb.cells)
    assert "local Pay-i sandbox is starting in the background" in loaded, loaded  # the load line says so
    assert "local Pay-i sandbox at http://127.0.0.1:" in called, called  # the first tracked cell says where
    response_id = called.split("response ", 1)[1].split()[0]
    assert "1 sent" in checked and "0 failed" in checked, checked
    state = json.loads(checked.split("state ", 1)[1])
    assert state["rows"] == 1 and state["row_id"] == [response_id], state
    assert state["ids"].count(response_id) == 1 and len(state["ids"]) == 1, state
