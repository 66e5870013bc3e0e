"""The spool journal: durable appends, acks, adoption from dead processes only, torn lines, compaction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from payi_notebook.delivery.places import endpoint_dir, endpoint_key_for
from payi_notebook.delivery.spool import Spool, parse_lines

HEADERS = {"xProxy-UseCase-Name": "spool-test", "xProxy-User-ID": "ana"}


def _body(n: int) -> dict[str, object]:
    return {
        "category": "system.openai",
        "resource": "gpt-4o-mini",
        "units": {"text": {"input": 100 + n, "output": 7}},
        "provider_response_id": f"chatcmpl-{n}",
    }


def _lines(path: Path) -> list[dict[str, object]]:
    """The journal's lines (the mapped file's unused tail is zeros)."""
    return [json.loads(line) for line in path.read_bytes().rstrip(b"\x00").splitlines() if line.strip()]


def _opened(directory: Path, **kwargs: int) -> Spool:
    spool = Spool(directory, **kwargs)
    spool.open()
    return spool


CHILD = """
import sys, time
from payi_notebook.delivery.spool import Spool
spool = Spool(sys.argv[1]); spool.open()
for n in range(3):
    spool.append(f"child-{n}", {"category": "system.openai", "units": {}, "provider_response_id": f"c-{n}"}, {})
spool.ack("child-0", "sent")
print(spool.path, flush=True)
time.sleep(60)
"""


def test_lines_hold_what_a_resend_needs(tmp_path: Path) -> None:
    spool = _opened(tmp_path)
    spool.append("e1", _body(1), HEADERS)
    spool.append("e2", _body(2), HEADERS)
    spool.ack("e1", "sent")
    assert spool.outstanding == 1
    lines = _lines(spool.path)  # type: ignore[arg-type]
    assert lines == [
        {"v": 1, "op": "event", "id": "e1", "body": _body(1), "headers": HEADERS},
        {"v": 1, "op": "event", "id": "e2", "body": _body(2), "headers": HEADERS},
        {"v": 1, "op": "ack", "id": "e1", "outcome": "sent"},
    ]
    pending, bad = parse_lines(spool.path.read_bytes())  # type: ignore[union-attr]
    assert list(pending) == ["e2"] and bad == 0


def test_close_deletes_a_settled_file_and_keeps_one_with_pending_events(tmp_path: Path) -> None:
    settled = _opened(tmp_path)
    settled.append("a", _body(1), HEADERS)
    settled.ack("a", "failed")
    path = settled.path
    assert settled.close() == 0
    assert not path.exists()  # type: ignore[union-attr]

    busy = _opened(tmp_path)
    busy.append("b", _body(2), HEADERS)
    assert busy.close() == 1
    assert busy.path.exists()  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="closed"):
        busy.append("c", _body(3), HEADERS)


def test_a_live_owners_file_is_left_alone_and_a_killed_owners_file_is_adopted(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        child_path = Path(child.stdout.readline().strip())  # type: ignore[union-attr]
        mine = _opened(tmp_path)
        assert mine.adopt() == []
        assert child_path.exists()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    records = mine.adopt()
    assert sorted(r.event_id for r in records) == ["child-1", "child-2"]
    assert {(r.body or {}).get("provider_response_id") for r in records} == {"c-1", "c-2"}
    assert not child_path.exists()
    assert sorted(mine._live) == ["child-1", "child-2"]
    assert [line["id"] for line in _lines(mine.path)] == ["child-1", "child-2"]  # type: ignore[arg-type]

    other = _opened(tmp_path)
    assert other.adopt() == []  # ours is locked: nothing is taken twice


def test_adoption_is_exactly_once_across_adopters(tmp_path: Path) -> None:
    orphan = _opened(tmp_path)
    for n in range(50):
        orphan.append(f"e{n}", _body(n), HEADERS)
    orphan.close()

    adopters = [_opened(tmp_path) for _ in range(4)]
    results: list[list[str]] = [[] for _ in adopters]
    barrier = threading.Barrier(len(adopters))

    def adopt(i: int) -> None:
        barrier.wait()
        results[i] = [r.event_id for r in adopters[i].adopt()]

    threads = [threading.Thread(target=adopt, args=(i,)) for i in range(len(adopters))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [event_id for result in results for event_id in result]
    assert sorted(taken) == sorted(f"e{n}" for n in range(50))


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    dead = tmp_path / "12345-deadbeef.jsonl"
    good = [json.dumps({"op": "event", "id": f"e{n}", "body": _body(n), "headers": HEADERS}) for n in range(2)]
    torn = json.dumps({"op": "event", "id": "e2", "body": _body(2), "headers": HEADERS})[:40]
    dead.write_text("\n".join(good) + "\n" + torn)
    spool = _opened(tmp_path)
    records = spool.adopt()
    assert [r.event_id for r in records] == ["e0", "e1"]
    assert spool.unreadable_lines == 1
    assert not dead.exists()


def test_the_same_event_in_two_orphans_is_adopted_once(tmp_path: Path) -> None:
    line = json.dumps({"op": "event", "id": "dup", "body": _body(1), "headers": HEADERS}) + "\n"
    (tmp_path / "1-aaaaaaaa.jsonl").write_text(line)
    (tmp_path / "2-bbbbbbbb.jsonl").write_text(line)
    assert [r.event_id for r in _opened(tmp_path).adopt()] == ["dup"]


def test_a_settled_large_file_is_truncated(tmp_path: Path) -> None:
    spool = _opened(tmp_path, compact_bytes=4000)
    for n in range(40):
        spool.append(f"e{n}", _body(n), HEADERS)
    for n in range(40):
        spool.ack(f"e{n}", "sent")
    assert spool.written < 4000 and len(spool.path.read_bytes().rstrip(b"\x00")) == spool.written  # type: ignore[union-attr]
    spool.append("late", _body(99), HEADERS)
    assert _lines(spool.path)[-1]["id"] == "late"  # type: ignore[arg-type]
    pending, _ = parse_lines(spool.path.read_bytes())  # type: ignore[union-attr]
    assert list(pending) == ["late"]


def test_a_large_file_with_few_live_events_is_rewritten(tmp_path: Path) -> None:
    spool = _opened(tmp_path, compact_bytes=4000)
    first = spool.path
    for n in range(40):
        spool.append(f"e{n}", _body(n), HEADERS)
    for n in range(39):
        spool.ack(f"e{n}", "sent")
    assert spool.path != first and not first.exists()  # type: ignore[union-attr]
    pending, _ = parse_lines(spool.path.read_bytes())  # type: ignore[union-attr]
    assert list(pending) == ["e39"]
    assert spool.written < 4000 and len(spool.path.read_bytes().rstrip(b"\x00")) == spool.written  # type: ignore[union-attr]
    spool.close()
    assert [r.event_id for r in _opened(tmp_path).adopt()] == ["e39"]


def test_concurrent_appends_are_whole_lines(tmp_path: Path) -> None:
    spool = _opened(tmp_path)

    def write(t: int) -> None:
        for n in range(200):
            spool.append(f"t{t}-{n}", _body(n), HEADERS)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pending, bad = parse_lines(spool.path.read_bytes())  # type: ignore[union-attr]
    assert bad == 0 and len(pending) == 1600 == spool.outstanding


def test_stale_half_created_files_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / ".999-cafebabe.tmp"
    stale.write_text("")
    _opened(tmp_path).adopt()
    assert not stale.exists()


def test_endpoints_get_their_own_directories(tmp_path: Path) -> None:
    assert endpoint_key_for("https://user:pw@API.Pay-i.com:8443/") == "https://api.pay-i.com:8443"
    a = endpoint_dir(tmp_path, endpoint_key_for("http://127.0.0.1:8080"))
    b = endpoint_dir(tmp_path, endpoint_key_for("http://127.0.0.1:8081"))
    c = endpoint_dir(tmp_path, f"sandbox:{tmp_path}/sandbox.db")
    assert len({a, b, c}) == 3
    assert a == endpoint_dir(tmp_path, "http://127.0.0.1:8080")
    assert a.parent == tmp_path and a.name.startswith("http-127.0.0.1-8080-")

    first = _opened(a)
    first.append(f"ev-{uuid.uuid4().hex}", _body(1), HEADERS)
    first.close()
    assert _opened(b).adopt() == []
    assert len(_opened(a).adopt()) == 1


def test_a_journal_growing_past_its_mapped_chunks_keeps_every_line(tmp_path: Path) -> None:
    from payi_notebook.delivery.spool import CHUNK_BYTES

    spool = _opened(tmp_path, compact_bytes=1 << 40)
    filler = "x" * 4096
    count = 2 * CHUNK_BYTES // 4096 + 10
    for n in range(count):
        spool.append(f"e{n}", {**_body(n), "provider_request_json": filler}, HEADERS)
    assert spool.written > 2 * CHUNK_BYTES
    spool.ack("e0", "sent")
    pending, bad = parse_lines(spool.path.read_bytes())  # type: ignore[union-attr]
    assert bad == 0 and len(pending) == count - 1 and "e0" not in pending
    assert spool.close() == count - 1
    assert len(_opened(tmp_path).adopt()) == count - 1


def test_a_full_disk_refuses_lines_with_an_error_and_takes_them_again_when_space_returns(tmp_path: Path) -> None:
    """Space is reserved before it is mapped: a full disk is SpoolFull (an OSError), never SIGBUS."""
    import errno

    from payi_notebook.delivery.spool import RETRY_S, SpoolFull

    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        spool = _opened(disk / "spool")  # the first chunk does not fit: one page is reserved instead
        assert spool.full is None
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with pytest.raises(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        filler = {**_body(0), "provider_request_json": "x" * 3000}
        spool.append("fits", _body(1), HEADERS)
        with pytest.raises(SpoolFull) as refused:
            for n in range(10):  # the reserved page fills up; the next line needs a block the disk lacks
                spool.append(f"big{n}", filler, HEADERS)
        assert refused.value.errno == errno.ENOSPC and "No space left on device" in (spool.full or "")
        spool.ack("fits", "sent")  # held: no room for the ack line either
        assert "fits" not in spool._live
        os.unlink(disk / "filler")
        deadline = time.monotonic() + RETRY_S * 5
        while not spool.retry() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.full is None
        spool.append("after", _body(2), HEADERS)
        pending, bad = parse_lines(spool.path.read_bytes())  # type: ignore[union-attr]
        assert bad == 0 and "fits" not in pending and "after" in pending
        spool.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
