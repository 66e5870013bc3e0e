"""``python -m payi_notebook.sandbox``: serve the sandbox until interrupted.

Prints ``PAYI_BASE_URL=…``, ``PAYI_API_KEY=…`` and ``PAYI_SANDBOX_PROVIDER_URL=…`` first (shell
syntax, so ``eval`` or a dotenv reader can take them), then serves. SIGINT/SIGTERM exit 0;
bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from . import start

PROG = "python -m payi_notebook.sandbox"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535; 0 picks a free one)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A local Pay-i-compatible sandbox and provider emulator (loopback only).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="sandbox port (default 0: a free one)")
    parser.add_argument("--db", default=None, help="SQLite file that keeps events and limits across restarts")
    parser.add_argument("--api-key", default=None, help="the xProxy-api-key to accept (default: a random one)")
    parser.add_argument("--provider-port", type=_port, default=0, help="provider emulator port (default 0: a free one)")
    parser.add_argument(
        "--strict-use-cases",
        action="store_true",
        help="refuse calls naming a use case that has no definition (use_case_not_found), like a Pay-i that requires them",
    )
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="also exit when stdin closes (a parent process that dies takes the sandbox with it)",
    )
    return parser


def _exit_on_eof(done: threading.Event) -> None:
    for _ in sys.stdin:
        pass
    done.set()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sandbox = start(
            host=args.host,
            port=args.port,
            db=args.db,
            api_key=args.api_key,
            provider_port=args.provider_port,
            strict_use_cases=args.strict_use_cases,
        )
    except (ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if args.exit_with_stdin:
        threading.Thread(target=_exit_on_eof, args=(done,), name="payi-sandbox-parent", daemon=True).start()
    print(f"PAYI_BASE_URL={sandbox.base_url}")
    print(f"PAYI_API_KEY={sandbox.api_key}")
    print(f"PAYI_SANDBOX_PROVIDER_URL={sandbox.provider_url}", flush=True)
    try:
        while not done.wait(1.0):
            if not sandbox.running:
                print(f"{PROG}: error: the server stopped unexpectedly", file=sys.stderr)
                return 1
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
