"""The sandbox served from a thread of this process: ``start()`` and its ``Sandbox`` handle (see the package)."""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from .emulator import create_app as create_emulator
from .faults import Faults, parse_fault
from .proxy import Proxy
from .record import Recorder
from .server import ServerThread, bind, url_of
from .service import create_app
from .store import Store

__all__ = ["Sandbox", "start"]

API_KEY = re.compile(r"[\x21-\x7e]{1,256}")


def _check_port(name: str, port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{name} must be an integer from 0 to 65535 (0 picks a free port), got {port!r}")
    return port


def _check_api_key(api_key: str | None) -> str:
    if api_key is None:
        return f"sandbox-{secrets.token_urlsafe(24)}"
    if not isinstance(api_key, str) or not API_KEY.fullmatch(api_key):
        raise ValueError("api_key must be 1-256 printable ASCII characters without spaces")
    return api_key


class Sandbox:
    """A running sandbox. ``stop()`` (or leaving a ``with`` block) shuts it down; idempotent."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        proxy: Proxy,
        emulator: Any,
        thread: ServerThread,
        base_url: str,
        provider_url: str,
        api_key: str,
        tmpdir: tempfile.TemporaryDirectory[str] | None,
    ) -> None:
        self.base_url = base_url
        self.provider_url = provider_url
        self.api_key = api_key
        self.db_path = store.path
        self.emulator = emulator
        self._store = store
        self._faults = faults
        self._proxy = proxy
        self._thread = thread
        self._tmpdir = tmpdir
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<Sandbox {state} base_url={self.base_url} provider_url={self.provider_url}>"

    @property
    def running(self) -> bool:
        return not self._stopped and self._thread.alive

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """Every event stored so far (what reached "Pay-i"), oldest first, after ``seq`` ``after``."""
        return self._store.events(after)

    def inject_fault(
        self, route: str = "*", status: int = 503, count: int = 1, retry_after: float | None = None
    ) -> None:
        """Fail the next ``count`` requests on ``route`` with ``status`` (no store change for them).

        ``route`` is one of ingest, bulk, proxy, limits, requests, use_cases (also reports) or ``*``.
        """
        body: dict[str, Any] = {"route": route, "status": status, "count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        self._faults.add(parse_fault(body))

    def clear_faults(self) -> int:
        """Drop pending faults; returns how many there were."""
        return self._faults.clear()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop = self._thread.loop
        if loop is not None and self._thread.alive:
            try:
                asyncio.run_coroutine_threadsafe(self._proxy.aclose(), loop).result(timeout=5)
            except (RuntimeError, TimeoutError):
                pass  # the loop is already closing; its sockets go with it
        self._thread.stop()
        self._store.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    db: str | Path | None = None,
    api_key: str | None = None,
    provider_port: int = 0,
    strict_use_cases: bool = False,
) -> Sandbox:
    """Serve the sandbox and the provider emulator on ``host`` (loopback only) in a background thread.

    ``db`` keeps events and limits in that SQLite file across restarts; without it a temporary
    database is used and deleted by ``stop()``. Without ``api_key`` a random key is generated.
    ``strict_use_cases`` refuses calls naming a use case that has no definition (``use_case_not_found``),
    like a Pay-i that requires definitions.
    """
    _check_port("port", port)
    _check_port("provider_port", provider_port)
    key = _check_api_key(api_key)
    tmpdir = None
    if db is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="payi-sandbox-")
        path = str(Path(tmpdir.name) / "sandbox.db")
    else:
        path = str(Path(db).expanduser())
        if not Path(path).parent.is_dir():
            raise ValueError(f"db: folder {str(Path(path).parent)!r} does not exist; create it or choose another path")
    sockets = []
    try:
        service_sock = bind(host, port)
        sockets.append(service_sock)
        provider_sock = bind(host, provider_port)
        sockets.append(provider_sock)
        store = Store(path)
    except BaseException:
        for sock in sockets:
            sock.close()
        if tmpdir is not None:
            tmpdir.cleanup()
        raise
    base_url, provider_url = url_of(service_sock), url_of(provider_sock)
    faults = Faults()
    recorder = Recorder(store)
    proxy = Proxy(recorder, provider_url)
    emulator = create_emulator()
    app = create_app(store, recorder, key, faults, proxy, strict_use_cases=strict_use_cases)
    thread = ServerThread([(app, service_sock), (emulator, provider_sock)])
    try:
        thread.start()
    except BaseException:
        thread.stop()
        store.close()
        if tmpdir is not None:
            tmpdir.cleanup()
        raise
    return Sandbox(store, faults, proxy, emulator, thread, base_url, provider_url, key, tmpdir)
