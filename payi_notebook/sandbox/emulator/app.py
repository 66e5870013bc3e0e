"""The Starlette app: one pipeline (auth, JSON, faults, log) in front of each provider route.

A route names where its model comes from: the body's ``model`` (OpenAI, Anthropic), the
Azure deployment in the path, or the ``{model}:{action}`` path segment (Gemini, Vertex).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import (
    anthropic_messages,
    bedrock_serve,
    cloud,
    gemini,
    ids,
    openai_chat,
    openai_common,
    openai_embeddings,
    openai_responses,
)
from .call import Call
from .errors import ApiError, anthropic_error, openai_error
from .faults import (
    FAULT_HEADER,
    FaultCounter,
    hide_stream_cuts_in_server_log,
    injected_error,
    resolve,
    split_model,
)
from .prompt_cache import PromptCache
from .request_log import RequestLog, RequestRecord, without_credentials
from .validation import Checker, parse_body

Handler = Callable[[Call], Response]
ModelOf = Callable[[dict[str, str], dict[str, Any]], Any]  # (path params, body) -> model name


@dataclass(frozen=True)
class Provider:
    """How one provider authenticates, words errors and names its request-id header."""

    name: str
    authenticate: Callable[[dict[str, str]], None]
    error: Callable[[ApiError, str], Response]
    new_request_id: Callable[[], str]
    request_id_header: str
    check: Checker


BEDROCK_FORMATS = "/bedrock"  # where Bedrock's OpenAI- and Anthropic-format endpoints are served

OPENAI = Provider(
    "openai", openai_common.authenticate, openai_error, ids.openai_request_id, "x-request-id", openai_common.CHECK
)
ANTHROPIC = Provider(
    "anthropic",
    anthropic_messages.authenticate,
    anthropic_error,
    ids.anthropic_request_id,
    "request-id",
    anthropic_messages.CHECK,
)
AZURE_OPENAI = Provider(
    "azure_openai", cloud.azure_authenticate, openai_error, ids.openai_request_id, "apim-request-id", openai_common.CHECK
)
AZURE_ANTHROPIC = Provider(
    "azure_anthropic",
    anthropic_messages.authenticate,
    anthropic_error,
    ids.anthropic_request_id,
    "request-id",
    anthropic_messages.CHECK,
)
GOOGLE = Provider("google", gemini.authenticate, gemini.google_error, gemini.request_id, "x-request-id", gemini.CHECK)
VERTEX = Provider("vertex", gemini.authenticate, gemini.google_error, gemini.request_id, "x-request-id", gemini.CHECK)
VERTEX_CLAUDE = Provider(
    "vertex", gemini.authenticate, anthropic_error, ids.anthropic_request_id, "request-id", anthropic_messages.CHECK
)


def _body_model(params: dict[str, str], body: dict[str, Any]) -> Any:
    return body.get("model")


def _path_model(params: dict[str, str], body: dict[str, Any]) -> str:
    return params["target"].rpartition(":")[0] or params["target"]


def _deployment(params: dict[str, str], body: dict[str, Any]) -> str:
    return params["deployment"]


def _azure(handler: Handler, embeddings: bool = False) -> Handler:
    """An OpenAI handler answering with the model the deployment serves."""

    def handle(call: Call) -> Response:
        call.model = cloud.azure_model(call.model, embeddings)
        return handler(call)

    return handle


def _gemini(vertex: bool) -> Handler:
    def handle(call: Call) -> Response:
        return gemini.handle(call, call.params["target"].rpartition(":")[2], vertex)

    return handle


class Emulator:
    """State shared by all requests to one app: the request log, prompt cache and fault counts."""

    def __init__(self, request_log_size: int, cache_entries: int) -> None:
        self.requests = RequestLog(request_log_size)
        self.prompt_cache = PromptCache(cache_entries)
        self.fault_counter = FaultCounter()

    def route(self, path: str, provider: Provider, handler: Handler, model_of: ModelOf = _body_model) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self.serve(request, provider, handler, model_of)

        return Route(path, endpoint, methods=["POST"])

    async def serve(self, request: Request, provider: Provider, handler: Handler, model_of: ModelOf) -> Response:
        request_id = provider.new_request_id()
        headers = dict(request.headers)
        record = self.requests.add(
            RequestRecord(provider.name, request.url.path, without_credentials(headers), request_id)
        )
        try:
            provider.authenticate(headers)
            call = await self._prepare(request, provider, record, request_id, model_of)
            if call.faults.delay:
                await asyncio.sleep(call.faults.delay)
            if call.faults.status is not None:
                raise injected_error(call.faults)
            response = handler(call)
        except ApiError as error:
            response = provider.error(error, request_id)
        response.headers[provider.request_id_header] = request_id
        record.status = response.status_code
        return response

    async def _prepare(
        self, request: Request, provider: Provider, record: RequestRecord, request_id: str, model_of: ModelOf
    ) -> Call:
        body = parse_body(await request.body())
        record.body = body
        params = dict(request.path_params)
        record.stream = body.get("stream") is True or params.get("target", "").endswith(":streamGenerateContent")
        if model_of is _body_model:
            requested = provider.check.field(body, ("model",), "string", required=True)
        else:
            requested = model_of(params, body)
        if not requested.strip():
            raise provider.check.invalid(("model",), "the model name is empty.")
        model, suffix = split_model(requested)
        record.requested_model, record.model = requested, model
        faults = resolve(request.headers.get(FAULT_HEADER), suffix)
        record.faults = faults.source
        faults = self.fault_counter.apply(faults, (request.url.path, model, faults.source))
        return Call(body, model, faults, request_id, self.prompt_cache, params)


def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    routes = (
        "POST /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/messages, /v1/messages/count_tokens, "
        "/openai/..., /anthropic/v1/messages, /{version}/models/{model}:{action} and "
        "/{version}/projects/.../models/{model}:{action}"
    )
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}; the emulator serves {routes}."
    else:
        message = f"Unknown request URL: {request.method} {request.url.path}; the emulator serves {routes}."
    provider = ANTHROPIC if request.url.path.startswith("/v1/messages") else OPENAI
    return provider.error(ApiError(status, message, code="unknown_url"), provider.new_request_id())


def create_app(*, request_log_size: int = 1000, cache_entries: int = 65536) -> Starlette:
    """A fresh emulator (cold prompt cache, empty log) speaking every provider's wire format.

    ``app.state.requests`` is the ``RequestLog``, ``app.state.prompt_cache`` the
    ``PromptCache``, ``app.state.fault_counter`` the ``times=N`` counts.
    """
    hide_stream_cuts_in_server_log()
    emulator = Emulator(request_log_size, cache_entries)
    app = Starlette(
        routes=[
            emulator.route("/v1/chat/completions", OPENAI, openai_chat.handle),
            emulator.route("/v1/responses", OPENAI, openai_responses.handle),
            emulator.route("/v1/embeddings", OPENAI, openai_embeddings.handle),
            emulator.route("/v1/messages", ANTHROPIC, anthropic_messages.handle),
            *bedrock_serve.routes(emulator),
            # Bedrock's OpenAI- and Anthropic-format endpoints (BedrockOpenAI, AnthropicBedrockMantle):
            # on the emulator's one URL Azure has /openai/v1 and Foundry /anthropic, so they live under
            # /bedrock (SDK_BASE_SUFFIX registers it), as their own hosts tell them apart in real life
            emulator.route(BEDROCK_FORMATS + "/openai/v1/chat/completions", OPENAI, openai_chat.handle),
            emulator.route(BEDROCK_FORMATS + "/openai/v1/responses", OPENAI, openai_responses.handle),
            emulator.route(BEDROCK_FORMATS + "/anthropic/v1/messages", ANTHROPIC, anthropic_messages.handle),
            *_cloud_routes(emulator),
            emulator.route("/v1/messages/count_tokens", ANTHROPIC, anthropic_messages.count_tokens),
        ],
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.requests = emulator.requests
    app.state.prompt_cache = emulator.prompt_cache
    app.state.fault_counter = emulator.fault_counter
    return app


DEPLOYMENT = "/openai/deployments/{deployment}"
PROJECT = "/{version}/projects/{project}/locations/{location}/publishers"


def _cloud_routes(emulator: Emulator) -> list[Route]:
    """Azure OpenAI, Foundry, the Gemini API and Vertex AI (Gemini and Claude)."""
    chat, responses = _azure(openai_chat.handle), _azure(openai_responses.handle)
    embeddings = _azure(openai_embeddings.handle, embeddings=True)
    return [
        emulator.route(DEPLOYMENT + "/chat/completions", AZURE_OPENAI, chat, _deployment),
        emulator.route(DEPLOYMENT + "/embeddings", AZURE_OPENAI, embeddings, _deployment),
        emulator.route(DEPLOYMENT + "/responses", AZURE_OPENAI, responses, _deployment),
        emulator.route("/openai/responses", AZURE_OPENAI, responses),
        emulator.route("/openai/v1/chat/completions", AZURE_OPENAI, chat),
        emulator.route("/openai/v1/responses", AZURE_OPENAI, responses),
        emulator.route("/openai/v1/embeddings", AZURE_OPENAI, embeddings),
        emulator.route("/anthropic/v1/messages", AZURE_ANTHROPIC, anthropic_messages.handle),
        emulator.route(PROJECT + "/google/models/{target}", VERTEX, _gemini(vertex=True), _path_model),
        emulator.route(PROJECT + "/anthropic/models/{target}", VERTEX_CLAUDE, cloud.vertex_claude, _path_model),
        emulator.route("/{version}/publishers/google/models/{target}", VERTEX, _gemini(vertex=True), _path_model),
        emulator.route("/{version}/models/{target}", GOOGLE, _gemini(vertex=False), _path_model),
    ]
