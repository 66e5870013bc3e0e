"""The flusher against the real sandbox over loopback: delivery, Pay-i's answers on ledger rows,
bulk under backlog, retries, outages, refusals, killed processes and interpreter exit."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import payi_notebook.sandbox as sandbox_pkg
from payi_notebook.client import PayiClient
from payi_notebook.context import Context, derive
from payi_notebook.delivery import Flusher
from payi_notebook.delivery.places import endpoint_dir
from payi_notebook.events import UsageEvent
from payi_notebook.ledger import Ledger, RowRef
from payi_notebook.pricing import price_units

from support.events import anthropic_event, openai_event
from support.openapi_spec import validate_component

KEY = "payi-flusher-key-" + uuid.uuid4().hex
FAST = dict(backoff_base=0.01, backoff_max=0.05, lookup_delay=0.01, exit_timeout=1.0)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[sandbox_pkg.Sandbox]:
    with sandbox_pkg.start(db=tmp_path / "sandbox.db", api_key=KEY) as running:
        yield running


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def make_flusher(tmp_path: Path, ledger: Ledger) -> Iterator[Any]:
    made: list[Flusher] = []

    def make(base_url: str, **kwargs: Any) -> Flusher:
        options: dict[str, Any] = {"spool_dir": str(tmp_path / "spool"), "endpoint_key": "sandbox:test", **FAST}
        options.update(kwargs)
        flusher = Flusher(ledger, base_url=base_url, api_key=KEY, **options)
        made.append(flusher)
        return flusher

    yield make
    for flusher in made:
        flusher.stop(1.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _context(limit_ids: list[str] | None = None) -> Context:
    return derive(
        Context(),
        use_case_name="flusher-test",
        use_case_step="answer",
        user_id="ana",
        account_name="acme",
        limit_ids=limit_ids,
        properties={"notebook": "costs.ipynb"},
    )


def _event(n: int, context: Context | None = None, **overrides: Any) -> UsageEvent:
    """Odd ``n`` an Anthropic call, even an OpenAI chat one, both with cache reads (no URL on the wire)."""
    fields: dict[str, Any] = dict(latency_ms=300.0 + n, ttft_ms=80.0, context=context or _context(), provider_uri=None)
    fields.update(overrides)
    if n % 2:
        return anthropic_event(800 + n, 120, cache_read=64, **fields)
    return openai_event(1500 + n, 210, cached=128, **fields)


def _submit(flusher: Flusher, ledger: Ledger, events: list[UsageEvent], send: bool = True) -> list[RowRef]:
    refs = []
    for event in events:
        ref = ledger.append(event)
        flusher.submit(event, ref, send=send)
        refs.append(ref)
    return refs


def _stored(sandbox: sandbox_pkg.Sandbox) -> Counter[str]:
    return Counter(e["provider_response_id"] for e in sandbox.events())


def _rows(ledger: Ledger) -> Any:
    return ledger.df.set_index("event_id")


def _spool_text(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "spool").rglob("*") if p.is_file())


def test_events_reach_payi_once_and_rows_carry_payis_answer(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    with PayiClient(sandbox.base_url, KEY) as payi:
        limit_id = payi.create_limit("team-q4", 100.0)["limit"]["limit_id"]
    flusher = make_flusher(sandbox.base_url)
    events = [_event(n, _context([limit_id])) for n in range(12)]
    _submit(flusher, ledger, events)

    report = flusher.flush(10)
    assert (report.sent, report.failed, report.pending, report.timed_out) == (12, 0, 0, False)
    stored = {e["provider_response_id"]: e for e in sandbox.events()}
    assert _stored(sandbox) == Counter({e.provider_response_id: 1 for e in events})

    rows = _rows(ledger)
    for event in events:
        record, row = stored[event.provider_response_id], rows.loc[event.event_id]
        assert record["source"] == "ingest"
        assert (record["category"], record["resource"], record["units"]) == (event.category, event.resource, event.units)
        assert record["context"]["user_id"] == "ana" and record["context"]["use_case_name"] == "flusher-test"
        assert record["context"]["limit_ids"] == [limit_id]
        assert row["status"] == "sent"
        assert row["payi_cost_usd"] == pytest.approx(record["cost"]["total"])
        assert row["payi_request_id"] == record["request_id"]
        assert row["limit_states"] == {limit_id: "ok"}
        expected = price_units(event.category, event.resource, event.units).estimate
        assert row["est_cost_usd"] == pytest.approx(expected) and expected > 0
        validate_component("ProxyResult", json.loads(row["xproxy_json"]))
    status = flusher.status()
    assert (status.sent, status.failed, status.pending, status.in_flight, status.last_error) == (12, 0, 0, 0, None)
    assert status.last_success_at is not None


def test_an_event_without_a_response_id_gets_a_stable_one(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    flusher = make_flusher(sandbox.base_url)
    event = _event(0, provider_response_id=None, http_status=500, units={})
    _submit(flusher, ledger, [event])
    flusher.flush(10)
    generated = f"payi_{event.event_id}"
    assert _stored(sandbox) == Counter({generated: 1})
    row = _rows(ledger).loc[event.event_id]
    assert row["provider_response_id"] == generated and row["status"] == "sent"


def test_a_backlog_goes_bulk_and_rows_get_payis_cost_afterwards(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    flusher = make_flusher(sandbox.base_url, bulk_threshold=50, bulk_size=100)
    events = [_event(n) for n in range(500)]
    _submit(flusher, ledger, events)
    report = flusher.flush(30)
    assert (report.sent, report.failed, report.timed_out, report.awaiting_cost) == (500, 0, False, 0)

    stored = sandbox.events()
    assert Counter(e["provider_response_id"] for e in stored) == Counter({e.provider_response_id: 1 for e in events})
    assert Counter(e["source"] for e in stored)["bulk"] >= 100
    by_id = {e["provider_response_id"]: e for e in stored}
    rows = _rows(ledger)
    for event in events:
        row = rows.loc[event.event_id]
        assert row["status"] == "sent"
        assert row["payi_cost_usd"] == pytest.approx(by_id[event.provider_response_id]["cost"]["total"])
        assert row["payi_request_id"] == by_id[event.provider_response_id]["request_id"]


def test_429s_and_500s_are_retried_until_each_event_lands_once(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    sandbox.inject_fault(route="ingest", status=429, count=5, retry_after=0)
    sandbox.inject_fault(route="ingest", status=500, count=3)
    flusher = make_flusher(sandbox.base_url)
    events = [_event(n) for n in range(10)]
    _submit(flusher, ledger, events)
    report = flusher.flush(15)
    assert (report.sent, report.failed, report.timed_out) == (10, 0, False)
    assert _stored(sandbox) == Counter({e.provider_response_id: 1 for e in events})
    assert set(_rows(ledger)["status"]) == {"sent"}
    status = flusher.status()
    assert status.retries >= 8
    assert "500" in (status.last_error or "")


def test_retry_after_is_honoured(sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any) -> None:
    sandbox.inject_fault(route="ingest", status=429, count=1, retry_after=1)
    flusher = make_flusher(sandbox.base_url, backoff_max=5.0)
    started = time.monotonic()
    _submit(flusher, ledger, [_event(0)])
    report = flusher.flush(10)
    assert report.sent == 1
    assert time.monotonic() - started >= 0.95


def test_outage_then_restart_on_the_same_port_and_db_delivers_once(
    tmp_path: Path, ledger: Ledger, make_flusher: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db, port = tmp_path / "outage.db", _free_port()
    first = sandbox_pkg.start(port=port, db=db, api_key=KEY)
    flusher = make_flusher(first.base_url)
    before = [_event(n) for n in range(5)]
    _submit(flusher, ledger, before)
    assert flusher.flush(10).sent == 5
    first.stop()

    during = [_event(n) for n in range(10)]
    _submit(flusher, ledger, during)
    report = flusher.flush(0.5)
    assert report.timed_out and report.pending + report.in_flight == 10 and report.sent == 0
    status = flusher.status()
    assert "unreachable" in (status.last_error or "") and status.retries > 0
    assert set(_rows(ledger).loc[[e.event_id for e in during], "status"]) == {"pending"}
    spooled = _spool_text(tmp_path)
    assert all(str(e.provider_response_id) in spooled for e in during)
    for text in (spooled, repr(flusher), str(status), repr(status), str(report), caplog.text):
        assert KEY not in text

    second = sandbox_pkg.start(port=port, db=db, api_key=KEY)
    try:
        report = flusher.flush(10)
        assert (report.sent, report.timed_out) == (10, False)
        assert _stored(second) == Counter({e.provider_response_id: 1 for e in before + during})
        assert set(_rows(ledger)["status"]) == {"sent"}
        assert flusher.status().retry_in_s == 0
    finally:
        flusher.stop(1.0)
        second.stop()


def test_a_refused_event_is_failed_with_payis_message_and_not_retried(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any, tmp_path: Path
) -> None:
    flusher = make_flusher(sandbox.base_url)
    bad = _event(0, _context(["no-such-limit"]))
    good = _event(1)
    _submit(flusher, ledger, [bad, good])
    report = flusher.flush(10)
    assert (report.sent, report.failed, report.timed_out) == (1, 1, False)
    assert any("invalid_limit_ids" in e for e in report.errors)
    row = _rows(ledger).loc[bad.event_id]
    assert row["status"] == "failed" and "invalid_limit_ids" in row["error"] and "no-such-limit" in row["error"]
    assert _stored(sandbox) == Counter({good.provider_response_id: 1})
    assert flusher.status().retries == 0
    flusher.stop(1.0)
    assert not list((tmp_path / "spool").rglob("*.jsonl"))  # settled both ways, so nothing is left to re-send


def test_a_refused_item_in_a_bulk_batch_fails_alone(sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any) -> None:
    flusher = make_flusher(sandbox.base_url, bulk_threshold=10)
    events = [_event(n) for n in range(30)]
    events[7] = _event(7, _context(["unknown-limit"]))
    _submit(flusher, ledger, events)
    report = flusher.flush(15)
    assert (report.sent, report.failed) == (29, 1)
    rows = _rows(ledger)
    assert rows.loc[events[7].event_id, "status"] == "failed"
    assert "invalid_limit_ids" in rows.loc[events[7].event_id, "error"]
    assert _stored(sandbox) == Counter({e.provider_response_id: 1 for i, e in enumerate(events) if i != 7})


CHILD = textwrap.dedent(
    """
    import os, sys, time, uuid
    from payi_notebook.delivery import Flusher
    from payi_notebook.events import UsageEvent
    from payi_notebook.context import Context, derive

    base_url, spool_dir, endpoint_key, phase = sys.argv[1:5]
    flusher = Flusher(None, base_url=base_url, api_key=os.environ["TEST_PAYI_KEY"], spool_dir=spool_dir,
                      endpoint_key=endpoint_key, backoff_base=0.01, backoff_max=0.05, exit_timeout=0.3)
    ctx = derive(Context(), use_case_name="child", user_id="bo")

    def submit(prefix, n):
        for i in range(n):
            event = UsageEvent(provider="openai", category="system.openai", operation="chat", resource="gpt-4o-mini",
                               provider_response_id=f"{prefix}-{i}", units={"text": {"input": 100 + i, "output": 9}},
                               http_status=200, context=ctx)
            flusher.submit(event, None)

    if phase == "kill":
        submit("child-a", 10)
        print("sent", flusher.flush(10).sent, flush=True)
        sys.stdin.readline()
        submit("child-b", 20)
        while flusher.status().retries == 0:
            time.sleep(0.01)
        print("pending", flusher.status().pending + flusher.status().in_flight, flush=True)
        time.sleep(60)
    else:  # the exit-time drain is its owner's (the session registers the same at exit)
        import atexit
        atexit.register(flusher.stop, flusher.settings.exit_timeout)
        submit("child-exit", 5)
        print("queued", flush=True)
    """
)


def _child(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "TEST_PAYI_KEY": KEY, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )


def test_events_of_a_killed_process_are_delivered_exactly_once(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any, tmp_path: Path
) -> None:
    spool_root, key = str(tmp_path / "spool"), f"sandbox:{sandbox.db_path}"
    child = _child([sandbox.base_url, spool_root, key, "kill"], stdin=subprocess.PIPE)
    try:
        assert child.stdout.readline().split() == ["sent", "10"]  # type: ignore[union-attr]
        sandbox.inject_fault(route="*", status=503, count=1_000_000)
        child.stdin.write("go\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        assert child.stdout.readline().split() == ["pending", "20"]  # type: ignore[union-attr]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    sandbox.clear_faults()
    orphans = list(endpoint_dir(spool_root, key).glob("*.jsonl"))
    assert len(orphans) == 1
    with orphans[0].open("a") as torn:  # a kill in the middle of a write
        torn.write('{"op":"event","id":"half-writ')

    flusher = make_flusher(sandbox.base_url, endpoint_key=key)
    flusher.start()
    assert flusher.status().recovered == 20
    report = flusher.flush(10)
    assert (report.sent, report.failed, report.timed_out) == (20, 0, False)
    expected = {f"child-a-{i}": 1 for i in range(10)} | {f"child-b-{i}": 1 for i in range(20)}
    assert _stored(sandbox) == Counter(expected)
    assert all(e["context"]["user_id"] == "bo" for e in sandbox.events())
    assert not orphans[0].exists()


def test_interpreter_exit_keeps_unsent_events_for_the_next_start(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any, tmp_path: Path
) -> None:
    spool_root, key = str(tmp_path / "spool"), f"sandbox:{sandbox.db_path}"
    started = time.monotonic()
    child = _child([f"http://127.0.0.1:{_free_port()}", spool_root, key, "exit"])
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0 and out.split() == ["queued"]
    assert "5 unsent event(s) kept in" in err
    assert KEY not in out + err
    assert time.monotonic() - started < 15

    flusher = make_flusher(sandbox.base_url, endpoint_key=key)
    assert flusher.flush(10).sent == 5
    assert _stored(sandbox) == Counter({f"child-exit-{i}": 1 for i in range(5)})


def test_price_only_events_are_priced_but_not_sent(sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any) -> None:
    flusher = make_flusher(sandbox.base_url)
    proxied = [_event(n, mode="proxy") for n in range(4)]
    unknown = _event(0, resource="gpt-from-the-future-9")
    refs = _submit(flusher, ledger, proxied + [unknown], send=False)
    assert flusher.wait_priced(refs, timeout=5)
    rows = _rows(ledger)
    for event in proxied:
        assert rows.loc[event.event_id, "est_cost_usd"] == pytest.approx(
            price_units(event.category, event.resource, event.units).estimate
        )
        assert rows.loc[event.event_id, "status"] == "pending"  # capture owns a proxied row's status
    assert math.isnan(rows.loc[unknown.event_id, "est_cost_usd"])
    assert flusher.status().unknown_models == {"gpt-from-the-future-9": 1}
    assert flusher.flush(5).sent == 0
    assert sandbox.events() == []


def test_rows_dropped_by_a_ledger_reset_are_still_sent(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    flusher = make_flusher(sandbox.base_url)
    events = [_event(n) for n in range(5)]
    _submit(flusher, ledger, events)
    ledger.reset()
    report = flusher.flush(10)
    assert (report.sent, report.failed) == (5, 0)
    assert _stored(sandbox) == Counter({e.provider_response_id: 1 for e in events})
    assert flusher.status().last_error is None and len(ledger) == 0


def test_submit_never_raises_and_marks_the_row(sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any) -> None:
    flusher = make_flusher(sandbox.base_url)
    broken = _event(0, units={"text": {"input": "lots"}})
    _submit(flusher, ledger, [broken])
    row = _rows(ledger).loc[broken.event_id]
    assert row["status"] == "failed" and "could not queue" in row["error"]
    assert "could not queue" in (flusher.status().last_error or "")
    good = _event(2)
    _submit(flusher, ledger, [good])
    assert flusher.flush(10).sent == 1


def test_flush_reports_since_the_previous_flush(sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any) -> None:
    flusher = make_flusher(sandbox.base_url)
    _submit(flusher, ledger, [_event(n) for n in range(3)])
    first = flusher.flush(10)
    _submit(flusher, ledger, [_event(n) for n in range(2)] + [_event(5, _context(["missing"]))])
    second = flusher.flush(10)
    assert (first.sent, first.failed) == (3, 0)
    assert (second.sent, second.failed, second.pending, second.in_flight) == (2, 1, 0, 0)
    assert "2 sent, 1 failed" in str(second)
    assert flusher.flush(1).sent == 0


def test_stop_then_start_again_keeps_the_rows_of_unsent_events(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any, tmp_path: Path
) -> None:
    sandbox.inject_fault(route="ingest", status=503, count=1_000_000)
    flusher = make_flusher(sandbox.base_url)
    events = [_event(n) for n in range(5)]
    _submit(flusher, ledger, events)
    report = flusher.stop(0.3)
    assert report.timed_out and not flusher.running
    status = flusher.status()
    assert status.pending == 5 and "5 unsent event(s) kept in" in (status.note or "")
    assert len(list((tmp_path / "spool").rglob("*.jsonl"))) == 1

    sandbox.clear_faults()
    flusher.start()
    report = flusher.flush(10)
    assert (report.sent, report.failed, report.timed_out) == (5, 0, False)
    assert flusher.status().recovered == 0  # the same rows, not strangers from a spool
    assert _stored(sandbox) == Counter({e.provider_response_id: 1 for e in events})
    assert set(_rows(ledger)["status"]) == {"sent"}


def test_bulk_faults_are_retried_and_a_batch_refused_as_a_whole_is_sent_item_by_item(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    sandbox.inject_fault(route="bulk", status=503, count=2)
    sandbox.inject_fault(route="bulk", status=400, count=1)
    flusher = make_flusher(sandbox.base_url, bulk_threshold=20, bulk_size=50)
    events = [_event(n) for n in range(60)]
    _submit(flusher, ledger, events)
    report = flusher.flush(20)
    assert (report.sent, report.failed, report.timed_out) == (60, 0, False)
    stored = sandbox.events()
    assert Counter(e["provider_response_id"] for e in stored) == Counter({e.provider_response_id: 1 for e in events})
    assert Counter(e["source"] for e in stored)["ingest"] >= 20  # the refused batch, one by one
    assert flusher.status().retries >= 2 * 20
    assert set(_rows(ledger)["status"]) == {"sent"}


def test_submit_from_many_threads_delivers_each_event_once(
    sandbox: sandbox_pkg.Sandbox, ledger: Ledger, make_flusher: Any
) -> None:
    flusher = make_flusher(sandbox.base_url)
    batches = [[_event(n) for n in range(40)] for _ in range(6)]
    threads = [threading.Thread(target=_submit, args=(flusher, ledger, batch)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = flusher.flush(20)
    assert (report.sent, report.failed, report.timed_out) == (240, 0, False)
    assert _stored(sandbox) == Counter({e.provider_response_id: 1 for batch in batches for e in batch})
    rows = _rows(ledger)
    assert set(rows["status"]) == {"sent"} and not rows["est_cost_usd"].isna().any()
