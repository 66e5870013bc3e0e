"""Route matching against the URLs the real SDKs build for the public endpoints (host wildcards,
path templates, versions), recorded by an in-process transport: no network, no emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

from payi_notebook.capture.proxying import proxyable
from payi_notebook.capture.routes import RouteTable
from payi_notebook.redact import is_secret
from payi_notebook.sandbox.proxy_routes import APIS

from support.openapi_spec import spec

TABLE = RouteTable(payi_base_url="https://api.pay-i.com")
GEMINI = {"candidates": [], "usageMetadata": {"promptTokenCount": 1}}
CHAT = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}
MESSAGE = {"id": "m", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": "end_turn",
           "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip


def recorder(reply: dict[str, Any]) -> tuple[list[httpx2.Request], httpx2.Client]:
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=json.dumps(reply).encode(), headers={"content-type": "application/json"})

    return seen, httpx2.Client(transport=httpx2.MockTransport(answer))


def url_of(call: Callable[[httpx2.Client], object], reply: dict[str, Any]) -> httpx2.URL:
    seen, client = recorder(reply)
    try:
        call(client)
    except (ValueError, TypeError, AttributeError, KeyError):  # the canned reply is thin; only the request matters
        pass
    assert seen, "the SDK sent nothing"
    return seen[-1].url


def azure(client: httpx2.Client, **kw: Any) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint="https://myres.openai.azure.com", api_key="k", api_version="2024-10-21",
                              http_client=client, **kw)  # fmt: skip


MSG = [{"role": "user", "content": "hi"}]
CALLS = {
    "azure deployment chat": (
        lambda c: azure(c).chat.completions.create(model="my-deploy", messages=MSG), CHAT,
        ("azure_openai", "chat", {"deployment": "my-deploy"}, True),
    ),
    "azure client deployment": (
        lambda c: azure(c, azure_deployment="dep2").chat.completions.create(model="ignored", messages=MSG), CHAT,
        ("azure_openai", "chat", {"deployment": "dep2"}, True),
    ),
    "azure embeddings": (
        lambda c: azure(c).embeddings.create(model="emb", input="x"), {"data": [], "model": "m", "object": "list",
                                                                      "usage": {"prompt_tokens": 1, "total_tokens": 1}},
        ("azure_openai", "embeddings", {"deployment": "emb"}, True),
    ),
    "azure responses": (
        lambda c: azure(c).responses.create(model="my-deploy", input="x"), {"id": "r", "object": "response"},
        ("azure_openai", "responses", {}, False),
    ),
    "azure v1 GA": (
        lambda c: openai.OpenAI(base_url="https://res2.cognitiveservices.azure.com/openai/v1/", api_key="k",
                                http_client=c).chat.completions.create(model="gpt-4o", messages=MSG), CHAT,
        ("azure_openai", "chat", {}, False),
    ),
    "foundry": (
        lambda c: anthropic.AnthropicFoundry(api_key="k", resource="myres", http_client=c).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MSG), MESSAGE,
        ("azure_anthropic", "messages", {}, True),
    ),
    "claude on vertex": (
        lambda c: anthropic.AnthropicVertex(region="us-east5", project_id="p", access_token="t", http_client=c)
        .messages.create(model="claude-sonnet-4-5@20250929", max_tokens=8, messages=MSG), MESSAGE,
        ("vertex", "messages", {"model": "claude-sonnet-4-5@20250929", "location": "us-east5"}, True),
    ),
    "gemini api": (
        lambda c: genai.Client(api_key="k", http_options=types.HttpOptions(httpx_client=c)).models.generate_content(
            model="gemini-2.5-flash", contents="x"), GEMINI,
        ("google", "generate", {"model": "gemini-2.5-flash"}, False),
    ),
    "vertex regional": (
        lambda c: genai.Client(vertexai=True, project="p", location="europe-west4", credentials=Credentials("t"),
                               http_options=types.HttpOptions(httpx_client=c)).models.generate_content(
            model="gemini-2.5-flash", contents="x"), GEMINI,
        ("vertex", "generate", {"model": "gemini-2.5-flash", "location": "europe-west4", "project": "p"}, True),
    ),
    "vertex global": (
        lambda c: genai.Client(vertexai=True, project="p", location="global", credentials=Credentials("t"),
                               http_options=types.HttpOptions(httpx_client=c)).models.generate_content(
            model="gemini-2.5-flash", contents="x"), GEMINI,
        ("vertex", "generate", {"model": "gemini-2.5-flash", "location": "global"}, True),
    ),
    "vertex express": (
        lambda c: genai.Client(vertexai=True, api_key="k", http_options=types.HttpOptions(httpx_client=c))
        .models.generate_content(model="gemini-2.5-flash", contents="x"), GEMINI,
        ("vertex", "generate", {"model": "gemini-2.5-flash"}, False),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CALLS))
def test_the_url_an_sdk_builds_matches_its_provider_route(name: str) -> None:
    call, reply, (provider, operation, params, proxied) = CALLS[name]
    url = url_of(call, reply)
    route = TABLE.match(url.scheme, url.host, url.port, url.path)
    assert route is not None, str(url)
    assert (route.provider, route.operation) == (provider, operation)
    assert params.items() <= dict(route.params).items()
    assert proxyable(route) is proxied
    assert not route.proxied and url.path.endswith(route.path)


@pytest.mark.parametrize(
    "url",
    [
        "https://openai.azure.com.evil.example/openai/deployments/d/chat/completions",  # suffix is not the host
        "https://a.b.openai.azure.com/openai/deployments/d/chat/completions",  # * is one label
        "https://myres.openai.azure.com/openai/deployments/d/chat/completions/extra",
        "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:countTokens",
        "http://myres.openai.azure.com/openai/deployments/d/chat/completions",  # scheme is part of the origin
    ],
)
def test_near_misses_are_not_provider_calls(url: str) -> None:
    parsed = httpx2.URL(url)
    assert TABLE.match(parsed.scheme, parsed.host, parsed.port, parsed.path) is None


def test_pay_i_proxy_routes_are_recognised_as_already_proxied() -> None:
    url = httpx2.URL("https://api.pay-i.com/api/v1/proxy/google.vertex/v1/projects/p/locations/l/publishers/google/models/g:streamGenerateContent")
    route = TABLE.match(url.scheme, url.host, url.port, url.path)
    assert route is not None and route.proxied and route.provider == "vertex" and route.endpoint.stream


def test_an_anthropic_vertex_base_ending_in_its_version_is_added_as_given() -> None:
    table = RouteTable({"vertex": ["http://gw.internal:8080/v1"]})
    route = table.match("http", "gw.internal", 8080, "/v1/projects/p/locations/l/publishers/anthropic/models/c:rawPredict")
    assert route is not None and route.base == "http://gw.internal:8080" and route.operation == "messages"


def test_the_google_api_key_header_is_a_credential() -> None:
    assert is_secret("x-goog-api-key") and is_secret("X-Goog-Api-Key")


def test_every_sandbox_proxy_route_is_a_path_of_the_published_spec() -> None:
    paths = spec()["paths"]
    assert all("post" in paths.get(path, {}) for path in APIS), [p for p in APIS if p not in paths]
    assert {path.split("/")[4] for path in APIS} == {"openai", "anthropic", "azure.openai", "azure.anthropic", "google.vertex"}
