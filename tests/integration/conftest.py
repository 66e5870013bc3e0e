"""Fixtures for the integration tests: the spec-checking HTTP client on the module's sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import payi_notebook.sandbox as sandbox_pkg

from support.sandbox_api import Api


@pytest.fixture(scope="module")
def api(sandbox: sandbox_pkg.Sandbox) -> Iterator[Api]:
    client = Api(sandbox)
    yield client
    client.http.close()
