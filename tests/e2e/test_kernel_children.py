"""Child processes started in a tracked cell, in real kernels with real processes: forked pool
workers get a journal and a delivery thread of their own, keep the cell's context and reach the
sandbox exactly once, without touching the parent's journal (also when the parent is killed);
spawn and forkserver children are tracked with one initializer line."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest

import payi_notebook as pn
from payi_notebook import sandbox as sandbox_mod

from support import children_work
from support.kernels import Kernel, flush_all, kernel_env, recover

pytestmark = pytest.mark.timeout(400)

TESTS = str(Path(__file__).resolve().parents[1])  # support/ is importable from here
SETUP = (
    "%load_ext payi_notebook\n"
    "import json, os, sys, multiprocessing as mp, payi_notebook as pn\n"
    f"sys.path.insert(0, {TESTS!r})\n"
    "from support import children_work\n"
    "from concurrent.futures import ProcessPoolExecutor\n"
    "from openai import OpenAI\n"
    "URL = pn.emulator_url()\n"
    "oa = OpenAI(base_url=URL + '/v1', api_key='sk-parent', max_retries=0)\n"
    "MSG = [{'role': 'user', 'content': 'One line from the parent.'}]\n"
    "def calls(n):\n"
    "    return [oa.chat.completions.create(model='gpt-4o-mini', messages=MSG).id for _ in range(n)]\n"
    "def kid_ids(results):\n"
    "    return [i for _, ids in results for i in ids]\n"
    "def kid_pids(results):\n"
    "    return sorted({pid for pid, _ in results})"
)


@contextmanager
def kernel_on_sandbox(tmp_path: Path) -> Iterator[tuple[Any, Kernel]]:
    """A fresh sandbox and a kernel aimed at it, with ``SETUP`` run."""
    with sandbox_mod.start(db=str(tmp_path / "payi.db")) as sb:
        kernel = Kernel(kernel_env(sb, tmp_path / "data"), tmp_path)
        try:
            kernel.execute(SETUP)
            yield sb, kernel
        finally:
            kernel.shutdown()


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def received(sb: Any, ids: list[str]) -> list[dict[str, Any]]:
    wanted = set(ids)
    return [e for e in sb.events() if e["provider_response_id"] in wanted]


def assert_once_with(sb: Any, ids: list[str], **context: str) -> None:
    events = received(sb, ids)
    assert sorted(e["provider_response_id"] for e in events) == sorted(ids), "each call reached Pay-i exactly once"
    for event in events:
        assert {k: event["context"].get(k) for k in context} == context


def test_forked_pool_workers_deliver_their_calls_once_with_the_cells_context(tmp_path: Path) -> None:
    with kernel_on_sandbox(tmp_path) as (sb, kernel):
        out = kernel.execute(
            "%%payi --quiet --use-case forked --user kid\n"
            "mine = calls(3)\n"
            "pool = mp.get_context('fork').Pool(2)\n"  # closed and joined: the workers drain as they exit
            "joined = pool.map(children_work.chat, [(URL, 2)] * 4)\n"
            "pool.close(); pool.join()\n"
            "mine += calls(3)\n"
            "print(json.dumps([mine, kid_ids(joined), kid_pids(joined), pn.status().delivery.recovered]))"
        )
        mine, joined, pids, recovered = last_json(out)
        assert os.getpid() not in pids and len(pids) >= 1
        assert recovered == 0, "orderly workers sent their own calls: nothing was left for the parent"
        out = kernel.execute(
            "%%payi --quiet --use-case forked --user kid\n"
            "with mp.get_context('fork').Pool(2) as pool:\n"  # terminated: SIGTERM, no exit handlers
            "    ended = pool.map(children_work.chat, [(URL, 2)] * 4)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    children_work.chat((URL, 2)); os._exit(0)\n"  # a bare fork leaving by os._exit
            "os.waitpid(pid, 0)\n"
            "print(json.dumps([kid_ids(ended), len(pn.ledger())]))"
        )
        ended, rows = last_json(out)
        flush_all(kernel)
        spool = kernel.execute("print(json.dumps(os.listdir(pn.get_session().flusher.spool_dir)))")
        assert len([f for f in last_json(spool) if f.endswith(".jsonl")]) == 1, "children's journals were taken over"
        assert rows == 6, "the parent's ledger holds its own calls"
        assert_once_with(sb, mine + joined + ended, use_case_name="forked", user_id="kid")
        bare = [e for e in sb.events() if e["context"].get("use_case_name") == "forked"]
        assert len(bare) == len(mine + joined + ended) + 2, "the bare fork's 2 calls arrived once each too"


def test_a_killed_parent_loses_none_of_its_calls_to_forked_children(tmp_path: Path) -> None:
    with sandbox_mod.start(db=str(tmp_path / "payi.db")) as sb:
        env = kernel_env(sb, tmp_path / "data")
        sb.inject_fault(route="*", status=503, count=100_000)  # Pay-i down: everything stays in the journals
        first = Kernel(env, tmp_path)
        try:
            first.execute(SETUP + "\npn.configure(exit_timeout=0.5)")
            out = first.execute(
                "%%payi --quiet --use-case forked --user kid\n"
                "mine = calls(10)\n"
                "with mp.get_context('fork').Pool(3) as pool:\n"
                "    working = pool.map_async(children_work.chat, [(URL, 2)] * 6)\n"
                "    mine += calls(10)\n"  # the parent journals while its children do
                "    kids = kid_ids(working.get(120))\n"
                "mine += calls(10)\n"
                "print(json.dumps([mine, kids]))"
            )
            mine, kids = last_json(out)
        finally:
            first.kill()
        assert received(sb, mine + kids) == []
        sb.clear_faults()
        recover(env, tmp_path)
        assert len(mine) == 30 and len(kids) == 12
        assert_once_with(sb, mine, use_case_name="forked", user_id="kid")
        assert_once_with(sb, kids, use_case_name="forked", user_id="kid")


def test_spawn_and_forkserver_children_are_tracked_with_one_initializer(tmp_path: Path) -> None:
    with kernel_on_sandbox(tmp_path) as (sb, kernel):
        out = kernel.execute(
            "%%payi --quiet --use-case spawned --user sp\n"
            "got = {}\n"
            "for method in ('spawn', 'forkserver', 'fork'):\n"
            "    with ProcessPoolExecutor(2, mp_context=mp.get_context(method),\n"
            "                             initializer=pn.child_init, initargs=(pn.child_state(),)) as ex:\n"
            "        got[method] = kid_ids(ex.map(children_work.chat, [(URL, 2)] * 2))\n"
            "with mp.get_context('spawn').Pool(2, initializer=pn.child_init, initargs=(pn.child_state(),)) as pool:\n"
            "    got['spawn pool'] = kid_ids(pool.map(children_work.chat, [(URL, 2)] * 2))\n"
            "with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as ex:\n"
            "    got['untracked'] = kid_ids(ex.map(children_work.chat, [(URL, 1)]))\n"
            "print(json.dumps(got))",
            timeout=240,
        )
        got = last_json(out)
        flush_all(kernel)
        for method in ("spawn", "forkserver", "fork", "spawn pool"):
            assert len(got[method]) == 4, method
            assert_once_with(sb, got[method], use_case_name="spawned", user_id="sp")
        assert received(sb, got["untracked"]) == [], "without the initializer a spawned child is not tracked"


def test_child_state_keeps_the_key_out_of_reprs_and_pickles_it_only_when_it_must(
    sandbox_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = sandbox_env.api_key
    with pn.track(use_case_name="keys", user_id="kay"):
        from_env = pn.child_state()
    assert key not in repr(from_env) and key.encode() not in pickle.dumps(from_env)
    assert "keys" in repr(from_env)
    with pytest.raises(RuntimeError, match="initializer"):
        pn.child_init(from_env)  # not in the process that made it

    monkeypatch.delenv("PAYI_API_KEY")  # children started now cannot read it: it must travel
    with pn.track(use_case_name="keys", user_id="kay"):
        travelling = pn.child_state()
    assert key not in repr(travelling) and key not in str(vars(travelling))
    assert pickle.loads(pickle.dumps(travelling)).api_key.value == key
    url = sandbox_env.provider_url
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=pn.child_init, initargs=(travelling,)) as ex:
        pid, ids = ex.submit(children_work.chat, (url, 2)).result(timeout=120)
    assert pid != os.getpid() and "PAYI_API_KEY" not in os.environ
    pn.flush(30)
    assert_once_with(sandbox_env, ids, use_case_name="keys", user_id="kay")
