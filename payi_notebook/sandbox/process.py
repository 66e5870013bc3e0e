"""The sandbox in a child process, tied to its parent's life.

The extension starts the sandbox this way when no Pay-i key is set: the child has its own
interpreter (and GIL), so serving ingest requests never competes with the notebook's own
code, much as a remote Pay-i would not. The child exits when its stdin closes, so a killed
kernel takes its sandbox along.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import httpx

from payi_notebook.files import private_open

_LINES = ("PAYI_BASE_URL", "PAYI_API_KEY", "PAYI_SANDBOX_PROVIDER_URL")


class SandboxProcess:
    """A running child sandbox: ``.base_url``, ``.provider_url``, ``.api_key``, ``.stop()``."""

    def __init__(self, proc: subprocess.Popen[str], values: dict[str, str], db_path: str | None) -> None:
        self._proc = proc
        self.base_url = values["PAYI_BASE_URL"]
        self.api_key = values["PAYI_API_KEY"]
        self.provider_url = values["PAYI_SANDBOX_PROVIDER_URL"]
        self.db_path = db_path

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SandboxProcess {state} pid={self._proc.pid} base_url={self.base_url}>"

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """Every event the sandbox stored (``GET /sandbox/v1/events``)."""
        response = httpx.get(
            f"{self.base_url}/sandbox/v1/events",
            params={"after": after},
            headers={"xProxy-api-key": self.api_key},
            timeout=10,
        )
        response.raise_for_status()
        data = response.json()
        return data["events"] if isinstance(data, dict) else data

    def stop(self, timeout: float = 10.0) -> None:
        """Close the child's stdin (it exits cleanly); terminate it if it does not."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            self._proc.wait(5)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(db: str | Path | None = None, log_path: str | Path | None = None, timeout: float = 30.0) -> SandboxProcess:
    """Start ``python -m payi_notebook.sandbox`` on free loopback ports and wait for its URLs."""
    command = [sys.executable, "-m", "payi_notebook.sandbox", "--port", "0", "--exit-with-stdin"]
    if db is not None:
        command += ["--db", str(db)]
    log: IO[str] | int = (
        os.fdopen(private_open(log_path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8")
        if log_path
        else subprocess.DEVNULL
    )
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    finally:
        if not isinstance(log, int):
            log.close()
    values: dict[str, str] = {}
    reader = threading.Thread(target=_read_lines, args=(proc, values), daemon=True)
    reader.start()
    reader.join(timeout)
    if len(values) < len(_LINES):
        proc.kill()
        proc.wait(5)
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(f"the local sandbox did not start within {timeout:.0f} s{where}")
    return SandboxProcess(proc, values, str(db) if db is not None else None)


def _read_lines(proc: subprocess.Popen[str], values: dict[str, str]) -> None:
    assert proc.stdout is not None
    while len(values) < len(_LINES):
        line = proc.stdout.readline()
        if not line:
            return
        key, sep, value = line.strip().partition("=")
        if sep and key in _LINES:
            values[key] = value
