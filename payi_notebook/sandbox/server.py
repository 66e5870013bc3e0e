"""Serve ASGI apps on loopback sockets from one background thread with its own event loop.

The sandbox and the provider emulator run side by side this way, inside a notebook kernel,
a test process or the CLI, without touching the caller's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp

LOOPBACK_NAMES = {"localhost"}


def check_loopback(host: str) -> None:
    """Refuse any address that is not loopback: the sandbox is never exposed to a network."""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"the sandbox binds to loopback only; use --host 127.0.0.1 (got {host!r})")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0 picks a free one)."""
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port (0 picks a free one)") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ServerThread:
    """Runs uvicorn for each (app, socket) pair in a daemon thread; ``stop()`` shuts all down."""

    def __init__(self, apps: Sequence[tuple[ASGIApp, socket.socket]], name: str = "payi-sandbox") -> None:
        self._servers = [
            (
                uvicorn.Server(
                    uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
                ),
                sock,
            )
            for app, sock in apps
        ]
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to start() / stop() callers
            self._error = exc

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in self._servers))

    def start(self, timeout: float = 15.0) -> None:
        """Start serving and wait until every server accepts connections."""
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not all(server.started for server, _ in self._servers):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"sandbox server failed to start: {self._error!r}")
            if waited >= timeout:
                raise TimeoutError(f"sandbox server did not start within {timeout:.0f} s")
            deadline.wait(0.01)
            waited += 0.01

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every server to exit and wait for the thread."""
        for server, _ in self._servers:
            server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        for _, sock in self._servers:
            sock.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
