"""The Starlette app: one pipeline (auth, JSON, faults, log) in front of each provider route."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import anthropic_messages, bedrock_serve, ids, openai_chat, openai_embeddings, openai_common, openai_responses
from .call import Call
from .errors import ApiError, anthropic_error, openai_error
from .faults import FAULT_HEADER, FaultCounter, hide_stream_cuts_in_server_log, injected_error, resolve, split_model
from .prompt_cache import PromptCache
from .request_log import RequestLog, RequestRecord, without_credentials
from .validation import Checker, parse_body

Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Provider:
    """How one provider authenticates, words errors and names its request-id header."""

    name: str
    authenticate: Callable[[dict[str, str]], None]
    error: Callable[[ApiError, str], Response]
    new_request_id: Callable[[], str]
    request_id_header: str
    check: Checker


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


class Emulator:
    """State shared by all requests to one app: the request log, prompt cache and fault counts."""

    def __init__(self, request_log_size: int, cache_entries: int) -> None:
        self.requests = RequestLog(request_log_size)
        self.prompt_cache = PromptCache(cache_entries)
        self.fault_counter = FaultCounter()

    def route(self, path: str, provider: Provider, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self.serve(request, provider, handler)

        return Route(path, endpoint, methods=["POST"])

    async def serve(self, request: Request, provider: Provider, handler: Handler) -> Response:
        request_id = provider.new_request_id()
        headers = dict(request.headers)
        record = self.requests.add(
            RequestRecord(provider.name, request.url.path, without_credentials(headers), request_id)
        )
        try:
            provider.authenticate(headers)
            call = await self._prepare(request, provider, record, request_id)
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

    async def _prepare(self, request: Request, provider: Provider, record: RequestRecord, request_id: str) -> Call:
        body = parse_body(await request.body())
        record.body = body
        record.stream = body.get("stream") is True
        requested = provider.check.field(body, ("model",), "string", required=True)
        if not requested.strip():
            raise provider.check.invalid(("model",), "the model name is empty.")
        model, suffix = split_model(requested)
        record.requested_model, record.model = requested, model
        faults = resolve(request.headers.get(FAULT_HEADER), suffix)
        record.faults = faults.source
        faults = self.fault_counter.apply(faults, (request.url.path, model, faults.source))
        return Call(body, model, faults, request_id, self.prompt_cache)


def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    routes = "POST /v1/chat/completions, /v1/responses, /v1/embeddings and /v1/messages"
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}; the emulator serves {routes}."
    else:
        message = f"Unknown request URL: {request.method} {request.url.path}; the emulator serves {routes}."
    provider = ANTHROPIC if request.url.path.startswith("/v1/messages") else OPENAI
    return provider.error(ApiError(status, message, code="unknown_url"), provider.new_request_id())


def create_app(*, request_log_size: int = 1000, cache_entries: int = 65536) -> Starlette:
    """A fresh emulator (cold prompt cache, empty log) speaking OpenAI and Anthropic.

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
            # Bedrock's OpenAI- and Anthropic-format endpoints (BedrockOpenAI, AnthropicBedrockMantle)
            emulator.route("/openai/v1/chat/completions", OPENAI, openai_chat.handle),
            emulator.route("/anthropic/v1/messages", ANTHROPIC, anthropic_messages.handle),
        ],
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.requests = emulator.requests
    app.state.prompt_cache = emulator.prompt_cache
    app.state.fault_counter = emulator.fault_counter
    return app
