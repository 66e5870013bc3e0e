"""The journal under bad luck, with real kernels, a real sandbox and real file systems: a full disk,
poisoned and unreadable spool entries, an unwritable spool dir, a failed load, file modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from payi_notebook import sandbox as sandbox_mod
from payi_notebook.delivery.places import endpoint_dir

from support.kernels import Kernel, kernel_env

pytestmark = pytest.mark.timeout(300)

SETUP = (
    "import json, os, payi_notebook as pn\n"
    "from openai import OpenAI\n"
    "oa = OpenAI(base_url=pn.emulator_url() + '/v1', api_key='sk-x', max_retries=0)\n"
    "def call(text='One line on disks.'):\n"
    "    return oa.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': text}]).id"
)


def mount_tmpfs(path: Path, options: str) -> None:
    """A real small (or read-only) file system at ``path``; skips the test where mounting is impossible."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    mounted: list[Path] = []
    yield mounted
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Use up every free block of the file system holding ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def provider_ids(sb: Any) -> list[str]:
    return [e["provider_response_id"] for e in sb.events()]


def test_a_full_disk_is_an_error_not_a_sigbus_and_journalling_resumes(tmp_path: Path, mounts: list[Path]) -> None:
    data = tmp_path / "data"
    mount_tmpfs(data, "size=64k")
    mounts.append(data)
    fill(data / "filler")
    with sandbox_mod.start() as sb:
        kernel = Kernel(kernel_env(sb, data), tmp_path)
        try:
            loaded = kernel.execute("%load_ext payi_notebook\n%payi status")  # the session starts in the background
            kernel.execute(SETUP)
            sb.inject_fault(route="*", status=503, count=10_000)  # Pay-i down: the event waits in memory
            out = kernel.execute("%%payi --use-case full\nfirst = call()\nprint('returned', first)", timeout=30)
            first = out.split("returned ", 1)[1].split()[0]  # the call returned: no SIGBUS
            assert "journal degraded" in loaded and "No space left on device" in loaded, loaded
            assert "⚠ journal degraded" in out, out  # the badge says so
            status = kernel.execute("print(pn.status())")
            assert "journal degraded (No space left on device" in status and "1 event(s) in memory only" in status, status
            sb.clear_faults()
            assert "1 sent" in kernel.execute("print(pn.flush(60))")
            assert first in provider_ids(sb), "the event kept in memory reached Pay-i"

            (data / "filler").unlink()  # space returns
            sb.inject_fault(route="*", status=503, count=10_000)
            second = kernel.execute("%%payi --quiet --use-case full\nprint(call())").strip().splitlines()[-1]
            kernel.execute(  # the spool tries for room again about once a second
                "import time\nend = time.monotonic() + 30\n"
                "while pn.get_session().journal_warning() and time.monotonic() < end:\n    time.sleep(0.1)"
            )
            status = kernel.execute("print(pn.status())")
            assert "degraded" not in status and "journal: " in status, status
            journals = [p for p in data.rglob("*.jsonl")]
            assert any(second.encode() in p.read_bytes() for p in journals), "the new call was journalled again"
            sb.clear_faults()
            assert "1 sent" in kernel.execute("print(pn.flush(60))")
        finally:
            kernel.shutdown()
        assert provider_ids(sb).count(second) == 1 and provider_ids(sb).count(first) == 1


def _dead_journal(directory: Path, lines: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "4242-deadbeef.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _event_line(event_id: str, provider_response_id: str) -> str:
    body = {
        "category": "system.openai",
        "resource": "gpt-4o-mini",
        "units": {"text": {"input": 12, "output": 3}},
        "provider_response_id": provider_response_id,
        "event_timestamp": "2026-12-01T10:00:00.000Z",
    }
    return json.dumps({"op": "event", "id": event_id, "body": body, "headers": {"xProxy-UseCase-Name": "old"}})


def test_a_poisoned_journal_never_breaks_loading(tmp_path: Path) -> None:
    with sandbox_mod.start() as sb:
        data = tmp_path / "data"
        directory = endpoint_dir(data / "spool", sb.base_url)
        _dead_journal(
            directory,
            [
                _event_line("good-1", "chatcmpl-poison-good"),
                '{"op":"call","id":"x","call":{}}',
                '{"op":"event","id":"torn","body":{"categ',
                '{"v":1,"op":"call","id":"y","call":{"provider":"nobody","operation":"chat","timestamp":1.0}}',
            ],
        )
        kernel = Kernel(kernel_env(sb, data), tmp_path)
        try:
            kernel.execute("%load_ext payi_notebook\n" + SETUP)
            assert "0 failed" in kernel.execute("print(pn.flush(60))")
            status = kernel.execute("print(pn.status())")
            assert "1 recovered" in status, status
            assert "1 torn or garbage line(s), 2 invalid line(s)" in status, status
            assert "4242-deadbeef.jsonl line 2: call record without 'provider'" in status, status
            assert "event y cannot be rebuilt" in status, status
            out = kernel.execute("%%payi --quiet --use-case poisoned\nprint(call())")  # capture works
            new_id = out.strip().splitlines()[-1]
            assert "0 failed" in kernel.execute("print(pn.flush(60))")
            own = [p.read_text() for p in directory.glob("*.jsonl")]
            assert not any('"id":"x"' in text or '"id":"y"' in text for text in own), "bad lines were copied forward"
        finally:
            kernel.shutdown()
        assert "chatcmpl-poison-good" in provider_ids(sb) and new_id in provider_ids(sb)
        quarantined = [json.loads(line) for line in (directory / "quarantine.ndjson").read_text().splitlines()]
        assert sorted(q["line"] for q in quarantined) == [0, 2, 3]
        assert {q["source"] for q in quarantined} == {"4242-deadbeef.jsonl"}
        assert '{"op":"call","id":"x","call":{}}' in [q["text"] for q in quarantined]
        assert stat.S_IMODE((directory / "quarantine.ndjson").stat().st_mode) == 0o600


def test_a_failed_load_leaves_nothing_installed_and_a_retry_works(tmp_path: Path) -> None:
    """With no key the sandbox's database goes under the data dir; one that cannot exist fails the load."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with sandbox_mod.start() as provider:
        env = kernel_env(provider, blocker / "data")
        del env["PAYI_API_KEY"], env["PAYI_BASE_URL"]
        kernel = Kernel(env, tmp_path)
        try:
            failed = kernel.execute(
                "try:\n    get_ipython().run_line_magic('load_ext', 'payi_notebook')\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc)"
            )
            assert "nothing was installed" in failed and "NotADirectoryError" in failed, failed
            left = kernel.execute(
                "ip = get_ipython()\n"
                "print('payi' in ip.magics_manager.magics['line'], "
                "any('payi' in getattr(t, '__module__', '') for t in ip.input_transformers_cleanup))"
            )
            assert left.strip() == "False False", f"half-installed after a failed load: {left}"
            kernel.execute(f"import os\nos.environ['PAYI_NOTEBOOK_DATA_DIR'] = {str(tmp_path / 'data')!r}")
            loaded = kernel.execute("%load_ext payi_notebook")
            assert "local Pay-i sandbox" in loaded, loaded
            kernel.execute(SETUP)
            kernel.execute("%%payi --quiet --use-case retried\ncall()")
            assert kernel.execute("print(len(pn.ledger()))").strip() == "1"
            assert "1 sent" in kernel.execute("print(pn.flush(60))")
        finally:
            kernel.shutdown()


def test_an_unwritable_spool_dir_is_named_in_the_load_line(tmp_path: Path, mounts: list[Path]) -> None:
    spool = tmp_path / "ro-spool"
    mount_tmpfs(spool, "ro,size=64k")
    mounts.append(spool)
    with sandbox_mod.start() as sb:
        kernel = Kernel(kernel_env(sb, tmp_path / "data", PAYI_NOTEBOOK_SPOOL_DIR=str(spool)), tmp_path)
        try:
            loaded = kernel.execute("%load_ext payi_notebook\n%payi status")  # the session starts in the background
            assert "journal off" in loaded and "Read-only file system" in loaded, loaded
            kernel.execute(SETUP)
            out = kernel.execute("%%payi --use-case ro\nprint(call())")
            assert "⚠ journal off" in out, out
            assert "1 sent" in kernel.execute("print(pn.flush(60))")
            status = kernel.execute("print(pn.status())")
            assert "journal: off: cannot create it in" in status, status
        finally:
            kernel.shutdown()


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_everything_under_the_data_dir_is_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # a garbage line in an orphaned journal of the sandbox's endpoint, so a quarantine file is written too
    orphan = endpoint_dir(data / "spool", f"sandbox:{data / 'sandbox.db'}") / "1-deadbeef.jsonl"
    with sandbox_mod.start() as provider:
        env = kernel_env(provider, data)
        del env["PAYI_API_KEY"], env["PAYI_BASE_URL"], env["PAYI_SANDBOX_PROVIDER_URL"]
        kernel = Kernel(env, tmp_path)
        try:
            kernel.execute("import os\nos.umask(0)")  # the worst umask: nothing masked
            orphan.parent.mkdir(parents=True)
            orphan.write_text("garbage\n")
            kernel.execute("%load_ext payi_notebook\n" + SETUP)
            kernel.execute("%%payi --quiet --use-case private\ncall()")
            assert "1 sent" in kernel.execute("print(pn.flush(60))")
            modes = _modes(data)
        finally:
            kernel.shutdown()
    made_by_test = {str(p.relative_to(data)) for p in (data, orphan.parent.parent)}
    wrong = {
        name: mode
        for name, mode in modes.items()
        if mode != ("0o700" if (data / name).is_dir() else "0o600") and name not in made_by_test
    }
    assert not wrong, f"not private: {wrong}"
    names = {Path(name).name for name in modes}
    assert {"sandbox.db", "sandbox.db-wal", "sandbox.db-shm", "sandbox.log", "quarantine.ndjson"} <= names, names
