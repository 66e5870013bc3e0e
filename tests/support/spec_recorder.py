"""httpx event hooks that hold every Pay-i request and answer to the shared spec, for our client and the SDK alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from payi_notebook.client import PayiClient

from support.openapi_spec import spec_path, validate_request, validate_response


@dataclass
class Exchange:
    method: str
    template: str
    body: Any
    status: int = 0


@dataclass
class SpecRecorder:
    """Validates each request body before it is sent and each JSON answer when it arrives."""

    seen: list[Exchange] = field(default_factory=list)

    def on_request(self, request: httpx.Request) -> None:
        template = spec_path(urlsplit(str(request.url)).path)
        body = json.loads(request.content) if request.content else None
        validate_request(template, request.method, body)
        self.seen.append(Exchange(request.method, template, body))

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        template = spec_path(urlsplit(str(response.request.url)).path)
        self.seen[-1].status = response.status_code
        if response.headers.get("content-type", "").startswith("application/json") and response.content:
            validate_response(template, response.request.method, response.status_code, response.json())

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.on_request], "response": [self.on_response]}

    def client(self, base_url: str, api_key: str) -> PayiClient:
        """Our client, with these hooks on its transport."""
        payi = PayiClient(base_url, api_key, timeout=30)
        payi._http.event_hooks = self.hooks()
        return payi

    def sdk_http(self) -> httpx.Client:
        """An httpx client for ``payi.Payi(http_client=...)``."""
        return httpx.Client(event_hooks=self.hooks(), timeout=30)

    def routes(self) -> set[tuple[str, str]]:
        return {(e.method, e.template) for e in self.seen}
