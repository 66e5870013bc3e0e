"""Nothing lost, nothing doubled, with real kernels: Pay-i outages, 429 storms and 500s, and a
kernel killed with events still pending. Afterwards every call is in the sandbox exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from payi_notebook import sandbox as sandbox_mod

from support.kernels import Kernel, kernel_env, recover

pytestmark = pytest.mark.timeout(300)

SETUP = (
    "%load_ext payi_notebook\n"
    "import json, payi_notebook as pn\n"
    "from openai import OpenAI\n"
    "oa = OpenAI(base_url=pn.emulator_url() + '/v1', api_key='sk-x', max_retries=0)\n"
    "MSG = [{'role': 'user', 'content': 'One line on resilience.'}]\n"
    "def calls(n):\n"
    "    return [oa.chat.completions.create(model='gpt-4o-mini', messages=MSG).id for _ in range(n)]"
)


def tracked_calls(kernel: Kernel, n: int) -> list[str]:
    out = kernel.execute(f"%%payi --quiet --use-case faults\nprint(json.dumps(calls({n})))")
    return json.loads(out.strip().splitlines()[-1])


def delivered(sb: Any, ids: list[str]) -> list[str]:
    wanted = set(ids)
    return sorted(e["provider_response_id"] for e in sb.events() if e["provider_response_id"] in wanted)


def test_a_kernel_killed_with_events_pending_loses_none_and_doubles_none(tmp_path: Path) -> None:
    with sandbox_mod.start(db=str(tmp_path / "payi.db")) as sb:
        env = kernel_env(sb, tmp_path / "data")
        sb.inject_fault(route="*", status=503, count=10_000)  # Pay-i down for ingest: events stay pending
        first = Kernel(env, tmp_path)
        try:
            first.execute(SETUP)
            ids = tracked_calls(first, 6)
            status = first.execute("print(pn.status())")
            assert "6 pending" in status.replace(",", "") or "pending" in status
        finally:
            first.kill()
        assert delivered(sb, ids) == []
        sb.clear_faults()

        recover(env, tmp_path)
        assert delivered(sb, ids) == sorted(ids), "every call of the killed kernel reached Pay-i exactly once"
        for event in (e for e in sb.events() if e["provider_response_id"] in set(ids)):
            # rebuilt from the raw journal record: model, usage and context as the kernel saw them
            assert event["resource"] == "gpt-4o-mini" and event["units"]["text"]["input"] > 0
            assert event["context"]["use_case_name"] == "faults" and event["cost"]["total"] > 0


def test_outage_429_storm_and_500s_end_with_every_call_once(tmp_path: Path) -> None:
    db = tmp_path / "payi.db"
    payi = sandbox_mod.start(db=str(db))
    port = int(payi.base_url.rsplit(":", 1)[1])
    with sandbox_mod.start() as provider:  # the emulator stays up while Pay-i goes down
        env = kernel_env(payi, tmp_path / "data", PAYI_SANDBOX_PROVIDER_URL=provider.provider_url)
        kernel = Kernel(env, tmp_path)
        try:
            kernel.execute(SETUP)
            payi.inject_fault(route="*", status=429, count=8, retry_after=1)
            ids = tracked_calls(kernel, 5)
            payi.inject_fault(route="*", status=500, count=3)
            ids += tracked_calls(kernel, 5)
            assert "0 failed" in kernel.execute("print(pn.flush(60))")
            assert delivered(payi, ids) == sorted(ids)

            key = payi.api_key
            payi.stop()  # Pay-i is unreachable while calls go on
            more = tracked_calls(kernel, 4)
            status = kernel.execute("print(pn.status())")
            assert "4 pending" in status and "last error" in status, status
            payi = sandbox_mod.start(port=port, db=str(db), api_key=key)
            out = kernel.execute("print(pn.flush(60))")
            assert "0 failed" in out and "pending" not in out, out
            assert delivered(payi, ids + more) == sorted(ids + more)
        finally:
            kernel.shutdown()
            payi.stop()
