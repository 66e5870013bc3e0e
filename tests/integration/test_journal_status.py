"""What the journal tells the user: unreadable entries skipped and named, format versions, size and
age of what is pending, the cap, and journals left for another endpoint (listed, delivered, discarded).
Real sandbox over loopback, real processes, a real IPython shell for ``%payi journal``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn
import payi_notebook.sandbox as sandbox_pkg
from payi_notebook.context import Context, derive
from payi_notebook.delivery import Flusher
from payi_notebook.delivery.places import endpoint_dir
from payi_notebook.delivery.spool import Spool
from payi_notebook.events import UsageEvent
from payi_notebook.ledger import Ledger
from payi_notebook.status_report import StatusReport

from support.events import openai_event

pytestmark = pytest.mark.timeout(180)
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "lookup_delay": 0.01, "exit_timeout": 1.0}


def event(tag: str, age_s: float = 0.0) -> UsageEvent:
    return openai_event(
        40,
        8,
        provider_response_id=f"chatcmpl-{tag}-{uuid.uuid4().hex[:8]}",
        latency_ms=5.0,
        provider_uri=None,
        context=derive(Context(), use_case_name="journal-status"),
        timestamp=time.time() - age_s,
    )


def delivered(sb: Any) -> set[str]:
    return {e["provider_response_id"] for e in sb.events()}


@pytest.fixture
def flushers() -> Iterator[list[Flusher]]:
    made: list[Flusher] = []
    yield made
    for flusher in made:
        flusher.stop(1.0)


def rows(status: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in status.journal.rows():
        out.setdefault(key, []).append(value)
    return out


def _orphan(directory: Path, lines: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"99-{uuid.uuid4().hex[:8]}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _event_line(n: int, **extra: Any) -> dict[str, Any]:
    body = {"category": "system.openai", "resource": "gpt-4o-mini", "units": {"text": {"input": 9, "output": 1}},
            "provider_response_id": f"chatcmpl-line-{n}-{uuid.uuid4().hex[:6]}"}  # fmt: skip
    return {**extra, "op": "event", "id": f"line-{n}", "body": body, "headers": {}}


def test_every_line_carries_its_format_version_and_unversioned_lines_still_read(tmp_path: Path) -> None:
    unversioned, current, future = _event_line(1), _event_line(2, v=1), _event_line(3, v=2)
    _orphan(tmp_path, [unversioned, current, future])
    spool = Spool(tmp_path)
    spool.open()
    taken = sorted(r.event_id for r in spool.adopt())
    assert taken == ["line-1", "line-2"]
    assert len(spool.invalid) == 1 and spool.invalid[0].endswith("line 3: format version 2; this payi_notebook reads version 1")
    lines = [json.loads(line) for line in spool.path.read_bytes().rstrip(b"\x00").splitlines()]  # type: ignore[union-attr]
    assert [line["v"] for line in lines] == [1, 1] and [line["id"] for line in lines] == ["line-1", "line-2"]
    spool.append("new", {"category": "system.openai", "units": {}}, {})
    spool.ack("new", "sent")
    ours = [json.loads(line) for line in spool.path.read_bytes().rstrip(b"\x00").splitlines()]  # type: ignore[union-attr]
    assert all(line["v"] == 1 for line in ours) and len(ours) == 4
    spool.close()


CHILD = """
import json, os, sys
from payi_notebook.delivery.spool import Spool
spool = Spool(sys.argv[1])
os.setgid(65534); os.setuid(65534)  # as an ordinary user: a mode-000 file is unreadable
spool.open()
taken = [r.event_id for r in spool.adopt()]
print(json.dumps({"taken": taken, "skipped": spool.skipped, "path": str(spool.path)}))
"""


def test_unreadable_entries_are_skipped_and_reported_and_journalling_stays_on(
    tmp_path: Path, flushers: list[Flusher]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to hand the spool dir to another user (a mode-000 file is readable by root)")
    directory = Path(tempfile.mkdtemp(prefix="payi-unreadable-"))
    try:
        _orphan(directory, [_event_line(1)])
        (directory / "sub.jsonl").mkdir()
        locked = directory / "locked.jsonl"
        locked.write_text(json.dumps(_event_line(2)) + "\n")
        for path in (directory, *directory.iterdir()):
            os.chown(path, 65534, 65534)
        locked.chmod(0o000)
        done = subprocess.run([sys.executable, "-c", CHILD, str(directory)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["taken"] == ["line-1"] and Path(result["path"]).exists()
        assert result["skipped"] == {
            str(locked): "cannot be adopted: Permission denied",
            str(directory / "sub.jsonl"): "not a regular file",
        }
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)

    # The same through the flusher: journalling stays on and status names the entry.
    with sandbox_pkg.start() as sb:
        spool_root = tmp_path / "spool"
        target = endpoint_dir(spool_root, "sandbox:unreadable")
        (target / "odd.jsonl").mkdir(parents=True)
        _orphan(target, [_event_line(3)])
        flusher = Flusher(Ledger(), base_url=sb.base_url, api_key=sb.api_key, spool_dir=str(spool_root),
                          endpoint_key="sandbox:unreadable", **FAST)  # fmt: skip
        flushers.append(flusher)
        flusher.start()
        assert flusher.flush(30).sent == 1
        status = flusher.status()
        assert status.spool_path is not None and status.journal.off is None  # type: ignore[union-attr]
        assert rows(status)["skipped"] == [f"{target / 'odd.jsonl'}: not a regular file"]
        restarted = Flusher(Ledger(), base_url=sb.base_url, api_key=sb.api_key, spool_dir=str(spool_root),
                            endpoint_key="sandbox:unreadable", **FAST)  # fmt: skip
        flusher.stop(1.0)
        flushers.append(restarted)
        restarted.start()
        assert len(list(target.glob("[0-9]*.jsonl"))) == 1, "a restart leaks no journal file"


def test_status_shows_journal_size_and_oldest_pending_age_and_warns_past_the_cap(
    tmp_path: Path, flushers: list[Flusher]
) -> None:
    with sandbox_pkg.start() as sb:
        ledger = Ledger()
        flusher = Flusher(ledger, base_url=sb.base_url, api_key=sb.api_key, spool_dir=str(tmp_path / "spool"),
                          journal_cap=2000, **FAST)  # fmt: skip
        flushers.append(flusher)
        sb.inject_fault(route="*", status=503, count=10_000)
        events = [event(f"cap{n}", age_s=90.0 - n) for n in range(12)]  # the first was captured 90 s ago
        for item in events:
            flusher.submit(item, ledger.append(item))
        flusher.flush(0.5)
        status = flusher.status()
        shown = rows(status)
        assert shown["journal"][0].endswith(("oldest pending event 90 s old", "oldest pending event 91 s old"))
        assert " KB in " in shown["journal"][0] and str(status.spool_path) in shown["journal"][0]
        assert "past its 2.0 KB cap" in shown["warning"][0] and "nothing is dropped" in shown["warning"][0]
        assert "past its 2.0 KB cap" in (flusher.journal_warning() or "")
        report = StatusReport("sandbox", sb.base_url, "telemetry", (), len(ledger), status)
        assert "oldest pending event" in repr(report) and "cap" in report._repr_html_()
        sb.clear_faults()
        assert flusher.flush(30).sent == 12
        assert {e.provider_response_id for e in events} <= delivered(sb), "past the cap nothing was dropped"


def _left_behind(sb: Any, url: str, spool: Path, tag: str, n: int) -> list[UsageEvent]:
    """Events an earlier kernel journalled for ``url`` and could not send before it went away."""
    sb.inject_fault(route="*", status=503, count=10_000)
    old = Flusher(Ledger(), base_url=url, api_key=sb.api_key, spool_dir=str(spool), **FAST)
    events = [event(f"{tag}{i}") for i in range(n)]
    for item in events:
        old.submit(item, None)
    old.flush(0.3)
    old.stop(0.1)
    sb.clear_faults()
    return events


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    result = ip.run_cell("%load_ext payi_notebook", store_history=True)
    assert result.success
    yield ip
    ip.run_cell("%unload_ext payi_notebook", store_history=True)


def test_journals_for_another_endpoint_are_listed_and_delivered_or_discarded(
    sandbox_env: Any, shell: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = sandbox_env
    other_url = sb.base_url.replace("127.0.0.1", "localhost")  # the same service under another name
    kept = _left_behind(sb, other_url, tmp_path / "spool", "other", 3)

    status = pn.status()
    other = [v for k, v in status.lines() if k == "other journal"]
    assert len(other) == 1 and f"3 undelivered event(s) for {other_url}" in other[0], status
    name = other[0].split("%payi journal deliver ", 1)[1].split()[0]
    assert f"%payi journal discard {name}" in other[0]

    assert shell.run_cell("%payi journal", store_history=True).success
    assert f"{name}: 3 undelivered event(s) for {other_url}" in capsys.readouterr().out
    assert shell.run_cell(f"%payi journal deliver {name}", store_history=True).success
    assert "3 event(s) from other journals queued" in capsys.readouterr().out
    assert pn.flush(30).sent == 3
    assert {e.provider_response_id for e in kept} <= delivered(sb)
    assert not [v for k, v in pn.status().lines() if k == "other journal"]

    dropped = _left_behind(sb, other_url, tmp_path / "spool", "drop", 2)
    result = shell.run_cell("%payi journal discard all", store_history=True)
    assert result.success and "discarded 2 undelivered event(s)" in capsys.readouterr().out
    assert not [v for k, v in pn.status().lines() if k == "other journal"]
    assert not {e.provider_response_id for e in dropped} & delivered(sb)
    shell.run_cell("%payi journal deliver nowhere", store_history=True)
    assert "no other journal named 'nowhere'" in capsys.readouterr().err
