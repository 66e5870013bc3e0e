"""Shared fixtures: an isolated data dir for every run, and a real sandbox + emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_KEYS = ("PAYI_API_KEY", "PAYI_BASE_URL", "PAYI_SANDBOX_PROVIDER_URL", "PAYI_NOTEBOOK_SPOOL_DIR", "JPY_SESSION_NAME")


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep spools and the embedded sandbox's database out of the user's data dir."""
    path = tmp_path_factory.mktemp("payi-data")
    saved = {k: os.environ.get(k) for k in (*ENV_KEYS, "PAYI_NOTEBOOK_DATA_DIR")}
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    os.environ["PAYI_NOTEBOOK_DATA_DIR"] = str(path)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def sandbox() -> Iterator[object]:
    """A real sandbox (Pay-i API + provider emulator) on loopback for this test module."""
    from payi_notebook import sandbox as sandbox_mod

    with sandbox_mod.start() as running:
        yield running


@pytest.fixture
def sandbox_env(sandbox: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Environment that points a new session at the module's sandbox, with its own spool."""
    from payi_notebook.session import close_session

    close_session()
    monkeypatch.setenv("PAYI_API_KEY", sandbox.api_key)  # type: ignore[attr-defined]
    monkeypatch.setenv("PAYI_BASE_URL", sandbox.base_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("PAYI_SANDBOX_PROVIDER_URL", sandbox.provider_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("PAYI_NOTEBOOK_SPOOL_DIR", str(tmp_path / "spool"))
    yield sandbox
    close_session(timeout=5)
