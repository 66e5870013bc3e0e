"""Starting, stopping and restarting the sandbox: the CLI, start(), persistence with --db."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

import payi_notebook.sandbox as sandbox_pkg
import payi_notebook.sandbox.__main__ as cli

from support.openapi_spec import VENDORED, shared_spec_path
from support.sandbox_api import Api, openai_event

CLI = [sys.executable, "-m", "payi_notebook.sandbox"]
LINE_NAMES = ["PAYI_BASE_URL", "PAYI_API_KEY", "PAYI_SANDBOX_PROVIDER_URL"]


def test_vendored_spec_equals_the_shared_reference() -> None:
    shared = shared_spec_path()
    if shared is None:
        pytest.skip("no shared/reference/payi-openapi.json on this machine")
    assert json.loads(VENDORED.read_text()) == json.loads(shared.read_text()), (
        f"{VENDORED} differs from {shared}; copy the shared spec over the vendored one"
    )


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _urls(process: subprocess.Popen[str]) -> dict[str, str]:
    """The three lines the CLI prints before anything else."""
    assert process.stdout is not None
    lines = [process.stdout.readline().rstrip("\n") for _ in LINE_NAMES]
    assert [line.partition("=")[0] for line in lines] == LINE_NAMES, lines
    return dict(line.split("=", 1) for line in lines)


def _launch(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = _spawn(*args)
    return process, _urls(process)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_urls_first_serves_and_exits_cleanly(stop: signal.Signals) -> None:
    process, env = _launch("--api-key", "cli-key-123")
    try:
        assert env["PAYI_API_KEY"] == "cli-key-123"
        assert env["PAYI_BASE_URL"].startswith("http://127.0.0.1:")
        answer = httpx.post(
            f"{env['PAYI_BASE_URL']}/api/v1/ingest", headers={"xProxy-api-key": "cli-key-123"}, json=openai_event()
        )
        assert answer.status_code == 200
        chat = httpx.post(
            f"{env['PAYI_SANDBOX_PROVIDER_URL']}/v1/chat/completions",
            headers={"Authorization": "Bearer sk"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 200 and chat.json()["usage"]["total_tokens"] > 0
    finally:
        process.send_signal(stop)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "cli-key-123" not in err


def test_cli_generates_a_key_when_none_is_given() -> None:
    process, env = _launch()
    try:
        assert len(env["PAYI_API_KEY"]) >= 20
        refused = httpx.get(f"{env['PAYI_BASE_URL']}/api/v1/limits", headers={"xProxy-api-key": "guess"})
        assert refused.status_code == 401
        allowed = httpx.get(f"{env['PAYI_BASE_URL']}/api/v1/limits", headers={"xProxy-api-key": env["PAYI_API_KEY"]})
        assert allowed.status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "http"], "--port"),
        (["--port", "70000"], "--port"),
        (["--host", "0.0.0.0"], "loopback"),
        (["--db", "/no/such/folder/x.db"], "does not exist"),
        (["--api-key", "has space"], "api_key"),
        (["--colour", "blue"], "--colour"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = cli.main(args)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], err


def test_cli_bad_input_as_a_subprocess() -> None:
    done = subprocess.run([*CLI, "--port", "-3"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--port" in done.stderr


def test_start_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="loopback"):
        sandbox_pkg.start(host="0.0.0.0")
    with pytest.raises(ValueError, match="port"):
        sandbox_pkg.start(port=-1)


def test_stop_is_idempotent_and_the_temporary_db_goes_away() -> None:
    sb = sandbox_pkg.start()
    db = Path(sb.db_path)
    assert db.exists() and "running" in repr(sb) and sb.api_key not in repr(sb)
    sb.stop()
    sb.stop()
    assert not db.exists()
    assert not sb.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{sb.base_url}/api/v1/limits", timeout=2)


def test_restart_on_the_same_db_keeps_events_limits_and_results(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    body = openai_event()
    with sandbox_pkg.start(db=db, api_key="persist-key") as first:
        api = Api(first)
        limit_id = api.create_limit(max=1e-9)
        ingested = api.ingest(body, headers={"xProxy-Limit-IDs": limit_id}).json()
        api.http.close()
    assert db.exists()
    with sandbox_pkg.start(db=db, api_key="persist-key") as second:
        api = Api(second)
        assert [event["request_id"] for event in api.events()] == [ingested["request_id"]]
        assert api.limit(limit_id)["totals"]["requests"]["overrun"] == 1
        result = api.call("GET", "/api/v1/requests/{request_id}/result", {"request_id": ingested["request_id"]})
        assert result.json()["xproxy_result"] == ingested["xproxy_result"]
        again = api.ingest(body, headers={"xProxy-Limit-IDs": limit_id}).json()
        assert again["xproxy_result"]["duplicate_request"] is True
        api.http.close()


def test_two_processes_share_one_db(tmp_path: Path) -> None:
    """Both sandboxes count into the same limit; duplicates are caught across them."""
    db = str(tmp_path / "shared.db")
    first, second = _spawn("--db", db), _spawn("--db", db)
    try:
        env1, env2 = _urls(first), _urls(second)
        h1 = httpx.Client(base_url=env1["PAYI_BASE_URL"], headers={"xProxy-api-key": env1["PAYI_API_KEY"]})
        h2 = httpx.Client(base_url=env2["PAYI_BASE_URL"], headers={"xProxy-api-key": env2["PAYI_API_KEY"]})
        limit_id = f"shared-{uuid.uuid4().hex[:6]}"
        assert (
            h1.post("/api/v1/limits", json={"limit_id": limit_id, "limit_name": limit_id, "max": 100}).status_code
            == 201
        )
        for index in range(20):
            client = h1 if index % 2 else h2
            assert (
                client.post("/api/v1/ingest", headers={"xProxy-Limit-IDs": limit_id}, json=openai_event()).status_code
                == 200
            )
        body = openai_event()
        original = h1.post("/api/v1/ingest", json=body).json()
        duplicate = h2.post("/api/v1/ingest", json=body).json()
        assert duplicate["request_id"] == original["request_id"]
        assert duplicate["xproxy_result"]["duplicate_request"] is True
        limit = h2.get(f"/api/v1/limits/{limit_id}").json()["limit"]
        assert limit["totals"]["requests"]["total"] == 20
        assert len(h1.get("/sandbox/v1/events").json()["events"]) == 21
        h1.close()
        h2.close()
    finally:
        for process in (first, second):
            process.terminate()
            process.communicate(timeout=15)
    assert first.returncode == 0 and second.returncode == 0


def test_cli_subprocess_does_not_inherit_a_proxy_environment() -> None:
    """A proxy set in the environment must not capture the sandbox's loopback hop to the emulator."""
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    process = subprocess.Popen([*CLI], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    urls = dict(process.stdout.readline().rstrip("\n").split("=", 1) for _ in LINE_NAMES)
    try:
        reply = httpx.post(
            f"{urls['PAYI_BASE_URL']}/api/v1/proxy/openai/v1/chat/completions",
            headers={"xProxy-api-key": urls["PAYI_API_KEY"], "Authorization": "Bearer sk"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            trust_env=False,
        )
        assert reply.status_code == 200 and "xproxy_result" in reply.json()
    finally:
        process.terminate()
        process.communicate(timeout=15)
