"""Shared pieces for the sandbox tests: a spec-checking HTTP client (the ``api`` fixture in
integration/conftest.py wraps conftest's ``sandbox``) and a valid ingest body."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

import payi_notebook.sandbox as sandbox_pkg

from support.openapi_spec import validate_response


class Api:
    """httpx against the sandbox; every Pay-i route's answer is checked against the shared spec."""

    def __init__(self, sandbox: sandbox_pkg.Sandbox) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(base_url=sandbox.base_url, headers={"xProxy-api-key": sandbox.api_key}, timeout=30)

    def call(
        self, method: str, template: str, path_params: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """``template`` is the spec path (``/api/v1/limits/{limit_id}``); ``path_params`` fill it in."""
        path = template.format(**(path_params or {}))
        response = self.http.request(method, path, **kwargs)
        validate_response(template, method, response.status_code, response.json())
        return response

    def ingest(self, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.call("POST", "/api/v1/ingest", headers=headers, json=body, **kwargs)

    def bulk(self, items: Any, **kwargs: Any) -> httpx.Response:
        return self.call("POST", "/api/v1/ingest/bulk", json=items, **kwargs)

    def create_limit(self, max: float, limit_type: str = "allow", threshold: float | None = None) -> str:
        limit_id = f"lim-{uuid.uuid4().hex[:10]}"
        body: dict[str, Any] = {"limit_id": limit_id, "limit_name": limit_id, "max": max, "limit_type": limit_type}
        if threshold is not None:
            body["threshold"] = threshold
        response = self.call("POST", "/api/v1/limits", json=body)
        assert response.status_code == 201, response.text
        return limit_id

    def limit(self, limit_id: str) -> dict[str, Any]:
        response = self.call("GET", "/api/v1/limits/{limit_id}", {"limit_id": limit_id})
        assert response.status_code == 200, response.text
        return response.json()["limit"]

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        response = self.http.get("/sandbox/v1/events", params={"after": after})
        assert response.status_code == 200, response.text
        return response.json()["events"]

    def last_seq(self) -> int:
        events = self.events()
        return events[-1]["seq"] if events else 0


def openai_event(**overrides: Any) -> dict[str, Any]:
    """A valid ingest body for a priced OpenAI model, with a fresh provider_response_id."""
    body: dict[str, Any] = {
        "category": "system.openai",
        "resource": "gpt-4o-mini",
        "units": {"text": {"input": 1200, "output": 300}},
        "provider_response_id": f"chatcmpl-{uuid.uuid4().hex}",
    }
    body.update(overrides)
    return body
