"""Deferred calls: what the journal keeps of a plain JSON call is enough to rebuild its event
exactly as the ledger shows it (recovery after a crash depends on that)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from anthropic import Anthropic
from openai import OpenAI

import payi_notebook as pn
from payi_notebook.capture.build import event_from_journal
from payi_notebook.delivery.spool import parse_lines

pytestmark = pytest.mark.timeout(120)


def journal_records(spool_root: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for path in spool_root.rglob("*.jsonl"):
        pending, bad = parse_lines(path.read_bytes())
        assert bad == 0
        records.update({r.event_id: r.call for r in pending.values() if r.call is not None})
    return records


def test_a_journalled_call_rebuilds_into_the_same_event(sandbox_env: Any, tmp_path: Path) -> None:
    limit = pn.limits.create(f"journal-{tmp_path.name}", 5.0).limit_id
    sandbox_env.inject_fault(route="*", status=503, count=10_000)  # keep the events pending (journalled)
    try:
        url = sandbox_env.provider_url
        with pn.track(use_case_name="journal", user_id="jo", properties={"k": "v"}, limit_ids=[limit]):
            chat = OpenAI(base_url=f"{url}/v1", api_key="sk-j", max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Rebuild me."}]
            )
            message = Anthropic(base_url=url, api_key="sk-j", max_retries=0).messages.create(
                model="claude-haiku-4-5", max_tokens=40, messages=[{"role": "user", "content": "And me."}]
            )
        records = journal_records(tmp_path / "spool")
        df = pn.ledger().df.set_index("event_id")
        assert set(records) == set(df.index), "both calls were journalled raw before they returned"
        for event_id, record in records.items():
            rebuilt = event_from_journal(event_id, record)
            row = df.loc[event_id]
            assert rebuilt.provider_response_id == row.provider_response_id in (chat.id, message.id)
            assert (rebuilt.resource, rebuilt.units) == (row.resource, row.units)
            assert rebuilt.tokens.input == row.input_tokens and rebuilt.tokens.output == row.output_tokens
            assert rebuilt.context.use_case_name == "journal" and rebuilt.context.user_id == "jo"
            assert dict(rebuilt.context.properties) == {"k": "v"} and rebuilt.context.limit_ids == (limit,)
            assert rebuilt.request_json and rebuilt.response_json and "sk-j" not in str(record)
    finally:
        sandbox_env.clear_faults()
    assert pn.flush(30).sent == 2
