"""The ledger's frame built a chunk at a time equals a from-scratch build, and a change rebuilds only its chunk."""

from __future__ import annotations

import random
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from payi_notebook.context import Context, derive
from payi_notebook.events import STATUSES, UsageEvent
from payi_notebook.ledger import COLUMNS, Ledger, RowRef, store
from payi_notebook.ledger.chunks import Pieces, build_frame
from payi_notebook.units import token_counts, units_for

CONTEXTS = [
    Context(),
    derive(Context(), use_case_name="summarize", user_id="ana", limit_ids=["team", "daily"], properties={"e": "a"}),
    derive(Context(), use_case_name="qa", use_case_version=2, limit_ids=["team"], properties={"e": "b"}),
]


def _event(rng: random.Random, i: int) -> UsageEvent:
    provider = rng.choice(("openai", "anthropic"))
    wire_usage = (
        {"prompt_tokens": rng.randint(0, 900), "completion_tokens": rng.randint(0, 50)}
        if provider == "openai"
        else {"input_tokens": rng.randint(0, 900), "output_tokens": 3, "cache_read_input_tokens": rng.choice((0, 64))}
    )
    units = units_for(provider, wire_usage) if rng.random() < 0.9 else {}
    if rng.random() < 0.05:
        units = {**units, "web_search_request": {"output": 1}}  # kept as given
    return UsageEvent(
        provider=provider,
        category=f"system.{provider}",
        operation=rng.choice(("chat", "messages")),
        resource=rng.choice(("gpt-4o", "claude", f"model-{i % 13}", None)),  # new categories keep arriving
        event_id=rng.choice((f"{rng.getrandbits(128):032x}", f"odd-{i}")),
        timestamp=1_767_000_000.0 + i,
        provider_response_id=rng.choice((None, f"resp-{i}")),
        units=units,
        tokens=token_counts(units),
        latency_ms=rng.choice((None, 12.5 * i)),
        http_status=rng.choice((None, 200, 429)),
        error=rng.choice((None, None, f"boom {i}")),
        context=rng.choice(CONTEXTS),
        execution_count=rng.choice((None, i // 5)),
        cell_id=f"cell-{i // 7}",
        est_cost_usd=rng.choice((None, 0.001 * i)),
        xproxy_result=rng.choice((None, {"request_id": f"r{i}", "limits": {"team": {"state": "ok"}}})),
    )


def _update(rng: random.Random, ledger: Ledger) -> None:
    index = rng.randrange(len(ledger))
    changes = rng.choice(
        (
            {"status": rng.choice(STATUSES)},
            {"payi_cost_usd": rng.random(), "status": "sent"},
            {"xproxy_result": {"request_id": f"late-{index}", "limits": {"daily": {"state": "exceeded"}}}},
            {"error": rng.choice((None, "late failure"))},
            {"http_status": None, "provider_response_id": f"again-{index}"},
        )
    )
    assert ledger.update(RowRef(ledger.generation, index), **changes)


def _plain(ledger: Ledger, columns: tuple[str, ...] = COLUMNS) -> pd.DataFrame:
    """The same rows built from scratch: no kept chunks."""
    return build_frame(ledger._store, Pieces(), ledger._lock, lambda: ledger.version, columns)[1]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(store, "CHUNK_ROWS", 8)  # ledgers made from here on seal a chunk every 8 rows


@pytest.mark.parametrize("seed", range(4))
def test_frame_equals_a_from_scratch_build_after_random_appends_and_updates(small_chunks, seed):
    rng = random.Random(seed)
    ledger = Ledger()
    for step in range(160):
        if len(ledger) and rng.random() < 0.4:
            _update(rng, ledger)
        else:
            ledger.append(_event(rng, step))
        if rng.random() < 0.3:
            pd.testing.assert_frame_equal(ledger.df, _plain(ledger))
        if rng.random() < 0.1:
            columns = tuple(rng.sample([*COLUMNS, "limit_id"], 4))
            pd.testing.assert_frame_equal(ledger.frame(list(columns)), _plain(ledger, columns))
    assert len(ledger._pieces.chunks) == len(ledger) // 8
    pd.testing.assert_frame_equal(ledger.df, _plain(ledger))


def test_an_update_of_an_old_row_rebuilds_only_its_chunk(small_chunks):
    rng = random.Random(1)
    ledger = Ledger()
    for i in range(30):  # chunks 0-2 sealed, rows 24-29 the open tail
        ledger.append(_event(rng, i))
    before = ledger.df
    kept = before.copy(deep=True)
    assert ledger.update(RowRef(ledger.generation, 10), status="sent", payi_cost_usd=0.5)
    after = ledger.df
    assert after["status"][10] == "sent" and after["cost_usd"][10] == 0.5
    rebuilt = {i for i in range(30) if after["properties"][i] is not before["properties"][i]}
    assert rebuilt == set(range(8, 16)) | set(range(24, 30))  # chunk 1 and the tail; nested objects are fresh
    assert all(after["units"][i] is before["units"][i] for i in (*range(8), *range(16, 24)))

    ledger.append(_event(rng, 30))
    again = ledger.df
    assert all(again["units"][i] is after["units"][i] for i in range(24))  # an append touches the tail only
    pd.testing.assert_frame_equal(again, _plain(ledger))
    pd.testing.assert_frame_equal(before, kept)  # a frame handed out never changes


def test_a_reset_drops_kept_chunks(small_chunks):
    rng = random.Random(2)
    ledger = Ledger()
    for i in range(20):
        ledger.append(_event(rng, i))
    assert len(ledger.df) == 20
    ledger.reset()
    assert len(ledger.df) == 0 and not ledger._pieces.chunks
    for i in range(9):
        ledger.append(_event(rng, i))
    pd.testing.assert_frame_equal(ledger.df, _plain(ledger))


def test_frames_read_while_another_thread_updates_old_rows_are_consistent(small_chunks):
    rng = random.Random(3)
    ledger = Ledger()
    for i in range(64):
        ledger.append(_event(rng, i))
    stop = threading.Event()

    def update() -> None:
        n = 0
        while not stop.is_set():
            ledger.update(RowRef(ledger.generation, n % 64), payi_cost_usd=float(n))
            n += 1

    writer = threading.Thread(target=update)
    writer.start()
    try:
        for _ in range(20):
            version = ledger.version
            frame = ledger.df
            assert len(frame) == 64 and ledger.version >= version
    finally:
        stop.set()
        writer.join()
    pd.testing.assert_frame_equal(ledger.df, _plain(ledger))


def test_the_ledger_module_and_pn_ledger_coexist_in_one_process():
    code = (
        "import payi_notebook.ledger as m\n"
        "import payi_notebook as pn\n"
        "from payi_notebook.ledger import Ledger, read_parquet\n"
        "assert m.Ledger is Ledger and callable(read_parquet)\n"
        "ledger = pn.ledger()\n"
        "assert isinstance(ledger, m.Ledger) and ledger is pn.get_session().ledger\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_heap_slice_rebases_contiguous_and_scattered_entries_alike():
    heap = store.Heap()
    for i in range(500):
        heap.add(f"s{i}".encode())
    for entries in ([3, -1, 4, 5], [2, 490, -1, 0, 490], [-1, -1], [499]):
        wanted = np.array(entries, dtype=np.int32)
        data, ends, rebased = heap.slice(wanted)
        offsets = np.frombuffer(ends, dtype=np.int64)
        got = [None if e < 0 else data[offsets[e] : offsets[e + 1]].decode() for e in rebased.tolist()]
        assert got == [None if e < 0 else f"s{e}" for e in entries]
