"""The Dask worker plugin: one registration puts capture on every current and future worker."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..children import ChildState
from .worker import setup_worker, teardown_worker

PLUGIN_NAME = "payi_notebook"


class PayiWorkerPlugin(WorkerPlugin):
    """Carries a ``ChildState`` (no key in its repr) and calls the engine-neutral child setup."""

    idempotent = True  # registering again (a second ``instrument``) is a no-op on workers that have it
    name = PLUGIN_NAME

    def __init__(self, state: ChildState) -> None:
        self.state = state

    def setup(self, worker: Any) -> None:
        setup_worker(worker, self.state)

    def teardown(self, worker: Any) -> None:
        teardown_worker(worker)

    def __repr__(self) -> str:
        return f"PayiWorkerPlugin({self.state!r})"
