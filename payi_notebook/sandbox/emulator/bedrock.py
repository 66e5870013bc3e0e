"""Bedrock runtime: Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream.

Served at ``/model/{modelId}/...`` in Bedrock's REST JSON and its binary event stream, so
boto3 (``endpoint_url=<emulator>``, any credentials: signatures are not checked) and
``anthropic.AnthropicBedrock`` parse the answers. The model id may be a plain id, a
cross-region profile (``us.anthropic...``) or an ARN; a fault suffix goes on its end
(``amazon.nova-lite-v1:0@429``), or in ``X-Emulator-Fault``.

Converse prompts cache at ``cachePoint`` blocks, by the Anthropic rules of the prompt cache
(ttl ``5m`` unless the block says ``1h``). InvokeModel speaks the model family's own body,
chosen by the model id: Anthropic Messages, Amazon Nova, Meta Llama, OpenAI (gpt-oss);
its JSON answers carry the ``x-amzn-bedrock-*-token-count`` headers, and every invoke
stream ends with a chunk holding ``amazon-bedrock-invocationMetrics``. Errors are Bedrock's:
``{"message"}`` with ``x-amzn-ErrorType`` (a 429 is a ``ThrottlingException``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payi_notebook.capture import eventstream

from . import anthropic_messages, ids
from .call import Call
from .delivery import dumps, event_stream, json_response
from .errors import ApiError
from .faults import FAULT_HEADER, injected_error, resolve, split_model
from .prompt import Prompt, PromptBuilder
from .prompt_cache import ANTHROPIC_TTL, CacheUsage
from .reply import Reply, plan_reply
from .request_log import RequestRecord, without_credentials
from .validation import parse_body

ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}
THROTTLED = "Too many requests, please wait before trying again."
DEFAULT_MAX_TOKENS = 4096
FAMILIES = ("anthropic", "nova", "llama", "openai")


class BedrockError(ApiError):
    """An error in Bedrock's shape; ``kind`` names its exception type."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(status, message)
        self.kind = kind or ERROR_TYPES.get(status) or "InternalServerException"


def error_response(error: ApiError, request_id: str) -> Response:
    kind = getattr(error, "kind", None) or ERROR_TYPES.get(error.status) or "InternalServerException"
    message = THROTTLED if error.status == 429 and not isinstance(error, BedrockError) else error.message
    headers = {
        **error.headers,
        "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-requestid": request_id,
    }
    return Response(
        dumps({"message": message}),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def family(model: str) -> str | None:
    """The model family of a Bedrock model id, profile or ARN."""
    name = model.rsplit("/", 1)[-1]
    for marker, kind in (
        ("anthropic.", "anthropic"),
        ("amazon.nova", "nova"),
        ("meta.llama", "llama"),
        ("openai.", "openai"),
    ):
        if marker in name:
            return kind
    return None


def _authenticate(headers: dict[str, str]) -> None:
    if not headers.get("authorization", "").strip():
        raise BedrockError(403, "Missing Authentication Token", "MissingAuthenticationTokenException")


def _field(body: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise BedrockError(
                400,
                f"1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null",
            )
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BedrockError(
            400,
            f"Malformed input request: #/{name}: expected {kind.__name__}, please reformat your input and try again.",
        )
    return value


# -- prompts ----------------------------------------------------------------------------------


def _block(builder: PromptBuilder, block: Any) -> None:
    if not isinstance(block, dict):
        raise BedrockError(400, "Malformed input request: a content block must be an object")
    if "cachePoint" in block:
        point = block["cachePoint"] if isinstance(block["cachePoint"], dict) else {}
        ttl = point.get("ttl") or "5m"
        if ttl not in ANTHROPIC_TTL:
            raise BedrockError(
                400,
                f"cachePoint.ttl must be one of {', '.join(ANTHROPIC_TTL)}, not {ttl!r}",
            )
        builder.end_block(ttl)
        return
    if isinstance(block.get("text"), str):
        builder.text(block["text"])
    else:  # images, documents, tool use and results count by their JSON
        builder.json(block)
    builder.end_block()


def converse_prompt(body: dict[str, Any]) -> Prompt:
    """Tools, system blocks, then messages (Converse's and Nova's shape), with ``cachePoint`` breakpoints."""
    builder = PromptBuilder()
    tools = (body.get("toolConfig") or {}).get("tools") if isinstance(body.get("toolConfig"), dict) else None
    for tool in tools or []:
        _block(builder, tool)
    system = _field(body, "system", list) or []
    if system:
        builder.open("system")
        for block in system:
            _block(builder, block)
        builder.close()
    messages = _field(body, "messages", list, required=True)
    if not messages:
        raise BedrockError(
            400,
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        )
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise BedrockError(
                400,
                f"Malformed input request: messages[].role must be user or assistant, not {role!r}",
            )
        builder.open(role)
        content = message.get("content")
        for block in [{"text": content}] if isinstance(content, str) else content or []:
            _block(builder, block)
        builder.close()
    return builder.build()


def _text_prompt(text: str) -> Prompt:
    builder = PromptBuilder()
    builder.text(text)
    builder.end_block()
    return builder.build()


def _openai_prompt(body: dict[str, Any]) -> Prompt:
    builder = PromptBuilder()
    for message in _field(body, "messages", list, required=True):
        builder.open(str(message.get("role", "user")))
        content = message.get("content")
        builder.text(content) if isinstance(content, str) else builder.json(content)
        builder.close()
    return builder.build()


# -- replies ----------------------------------------------------------------------------------


class _Answer:
    """One reply: its text pieces, the fresh prompt tokens and the cache counts."""

    def __init__(self, reply: Reply, fresh: int, cache: CacheUsage) -> None:
        self.reply = reply
        self.cache = cache
        self.fresh = fresh
        self.stop = "max_tokens" if reply.truncated else "end_turn"
        self.started = time.perf_counter()

    @classmethod
    def plan(cls, call: Call, prompt: Prompt, cap: int | None, cache: CacheUsage) -> _Answer:
        reply = plan_reply(
            prompt.seed(call.model),
            cap=cap or DEFAULT_MAX_TOKENS,
            length=call.faults.reply,
        )
        return cls(reply, len(prompt) - cache.read - cache.write, cache)

    def token_usage(self) -> dict[str, Any]:
        """Converse's ``TokenUsage``."""
        out = self.reply.output_tokens
        usage: dict[str, Any] = {
            "inputTokens": self.fresh,
            "outputTokens": out,
            "totalTokens": self.fresh + out + self.cache.read + self.cache.write,
        }
        if self.cache.read or self.cache.write:
            usage["cacheReadInputTokens"] = self.cache.read
            usage["cacheWriteInputTokens"] = self.cache.write
            details = [
                {"ttl": ttl, "inputTokens": n}
                for ttl, n in (("5m", self.cache.write_5m), ("1h", self.cache.write_1h))
                if n
            ]
            if details:
                usage["cacheDetails"] = details
        return usage

    def latency(self) -> int:
        return max(1, round((time.perf_counter() - self.started) * 1000))

    def metrics(self) -> dict[str, int]:
        """``amazon-bedrock-invocationMetrics`` of the last invoke-stream chunk."""
        latency = self.latency()
        return {
            "inputTokenCount": self.fresh,
            "outputTokenCount": self.reply.output_tokens,
            "invocationLatency": latency,
            "firstByteLatency": latency,
            "cacheReadInputTokenCount": self.cache.read,
            "cacheWriteInputTokenCount": self.cache.write,
        }

    def count_headers(self) -> dict[str, str]:
        headers = {
            "x-amzn-bedrock-input-token-count": str(self.fresh),
            "x-amzn-bedrock-output-token-count": str(self.reply.output_tokens),
            "x-amzn-bedrock-invocation-latency": str(self.latency()),
        }
        if self.cache.read or self.cache.write:
            headers["x-amzn-bedrock-cache-read-input-token-count"] = str(self.cache.read)
            headers["x-amzn-bedrock-cache-write-input-token-count"] = str(self.cache.write)
        return headers


def _converse_answer(call: Call) -> _Answer:
    prompt = converse_prompt(call.body)
    config = _field(call.body, "inferenceConfig", dict) or {}
    cache = call.cache.anthropic_usage(prompt, call.model)
    return _Answer.plan(call, prompt, config.get("maxTokens"), cache)


def converse(call: Call) -> Response:
    answer = _converse_answer(call)
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": answer.reply.text}]}},
        "stopReason": answer.stop,
        "usage": answer.token_usage(),
        "metrics": {"latencyMs": answer.latency()},
    }
    return json_response(body, call.faults, {})


def converse_stream(call: Call) -> Response:
    answer = _converse_answer(call)

    def events() -> Iterator[bytes]:
        def event(kind: str, payload: dict[str, Any]) -> bytes:
            return eventstream.event(kind, dumps(payload).encode())

        yield event("messageStart", {"role": "assistant"})
        for piece in answer.reply.pieces:
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        yield event("messageStop", {"stopReason": answer.stop})
        yield event(
            "metadata",
            {"usage": answer.token_usage(), "metrics": {"latencyMs": answer.latency()}},
        )

    return _stream(events(), call)


def _stream(events: Iterator[bytes], call: Call) -> Response:
    return event_stream(events, call.faults, {}, media_type=eventstream.CONTENT_TYPE)


def _chunk(payload: dict[str, Any]) -> bytes:
    encoded = base64.b64encode(dumps(payload).encode()).decode()
    return eventstream.event("chunk", dumps({"bytes": encoded}).encode())


def _sse_payloads(events: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    for raw in events:
        yield json.loads(raw.split(b"\ndata: ", 1)[1])


def invoke(call: Call, stream: bool) -> Response:
    kind = family(call.model)
    if kind is None:
        raise BedrockError(
            400,
            f"The provided model identifier is invalid: {call.model} (the emulator knows {', '.join(FAMILIES)} models)",
        )
    if kind == "anthropic":
        return _invoke_anthropic(call, stream)
    body = call.body
    if kind == "nova":
        prompt = converse_prompt(body)
        cap = (_field(body, "inferenceConfig", dict) or {}).get("maxTokens")
        cache = call.cache.anthropic_usage(prompt, call.model)
    elif kind == "llama":
        prompt, cap, cache = (
            _text_prompt(_field(body, "prompt", str, required=True)),
            body.get("max_gen_len"),
            CacheUsage(),
        )
    else:
        prompt, cap, cache = (
            _openai_prompt(body),
            body.get("max_completion_tokens") or body.get("max_tokens"),
            CacheUsage(),
        )
    answer = _Answer.plan(call, prompt, cap, cache)
    shapes = {"nova": _nova, "llama": _llama, "openai": _gpt_oss}
    whole, pieces = shapes[kind](answer, call)
    if not stream:
        return json_response(whole, call.faults, answer.count_headers())

    def chunks() -> Iterator[bytes]:
        parts = list(pieces)
        for index, part in enumerate(parts):
            if index == len(parts) - 1:
                part = {**part, "amazon-bedrock-invocationMetrics": answer.metrics()}
            yield _chunk(part)

    return _stream(chunks(), call)


def _invoke_anthropic(call: Call, stream: bool) -> Response:
    message = anthropic_messages.message_for(call)
    cache = CacheUsage(
        read=message.input_usage["cache_read_input_tokens"],
        write_5m=message.cache_creation["ephemeral_5m_input_tokens"],
        write_1h=message.cache_creation["ephemeral_1h_input_tokens"],
    )
    answer = _Answer(message.reply, message.input_usage["input_tokens"], cache)
    if not stream:
        return json_response(message.body(), call.faults, answer.count_headers())

    def chunks() -> Iterator[bytes]:
        for payload in _sse_payloads(message.events()):
            if payload.get("type") == "message_stop":
                payload["amazon-bedrock-invocationMetrics"] = answer.metrics()
            yield _chunk(payload)

    return _stream(chunks(), call)


def _nova(answer: _Answer, call: Call) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    usage = answer.token_usage()
    usage = {
        "inputTokens": usage["inputTokens"],
        "outputTokens": usage["outputTokens"],
        "totalTokens": usage["totalTokens"],
        "cacheReadInputTokenCount": answer.cache.read,
        "cacheWriteInputTokenCount": answer.cache.write,
    }
    whole = {
        "output": {"message": {"role": "assistant", "content": [{"text": answer.reply.text}]}},
        "stopReason": answer.stop,
        "usage": usage,
    }

    def pieces() -> Iterator[dict[str, Any]]:
        yield {"messageStart": {"role": "assistant"}}
        for index, piece in enumerate(answer.reply.pieces):
            yield {"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}}
        yield {"contentBlockStop": {"contentBlockIndex": 0}}
        yield {"messageStop": {"stopReason": answer.stop}}
        yield {
            "metadata": {
                "usage": {
                    "inputTokens": usage["inputTokens"],
                    "outputTokens": usage["outputTokens"],
                }
            }
        }

    return whole, pieces()


def _llama(answer: _Answer, call: Call) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    stop = "length" if answer.reply.truncated else "stop"
    whole = {
        "generation": answer.reply.text,
        "prompt_token_count": answer.fresh,
        "generation_token_count": answer.reply.output_tokens,
        "stop_reason": stop,
    }

    def pieces() -> Iterator[dict[str, Any]]:
        count = len(answer.reply.pieces)
        for index, piece in enumerate(answer.reply.pieces):
            last = index == count - 1
            yield {
                "generation": piece,
                "prompt_token_count": answer.fresh if index == 0 else None,
                "generation_token_count": index + 1,
                "stop_reason": stop if last else None,
            }

    return whole, pieces()


def _gpt_oss(answer: _Answer, call: Call) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    ident, created = ids.chat_completion_id(), call.created
    finish = "length" if answer.reply.truncated else "stop"
    usage = {
        "prompt_tokens": answer.fresh,
        "completion_tokens": answer.reply.output_tokens,
        "total_tokens": answer.fresh + answer.reply.output_tokens,
    }
    whole = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.reply.text},
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }

    def pieces() -> Iterator[dict[str, Any]]:
        for piece in answer.reply.pieces:
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": call.model,
                "choices": [delta],
            }
        done = {"index": 0, "delta": {}, "finish_reason": finish}
        yield {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": call.model,
            "choices": [done],
        }

    return whole, pieces()


# -- serving ----------------------------------------------------------------------------------


def routes(emulator: Any) -> list[Route]:
    """The four operations, sharing the emulator's request log, prompt cache and fault counts."""
    handlers: dict[str, Callable[[Call], Response]] = {
        "converse": converse,
        "converse-stream": converse_stream,
        "invoke": lambda call: invoke(call, stream=False),
        "invoke-with-response-stream": lambda call: invoke(call, stream=True),
    }

    def endpoint(operation: str) -> Callable[[Request], Any]:
        handler = handlers[operation]

        async def serve(request: Request) -> Response:
            request_id = ids.hex_id("", 32)
            request_id = (
                f"{request_id[:8]}-{request_id[8:12]}-{request_id[12:16]}-{request_id[16:20]}-{request_id[20:32]}"
            )
            headers = dict(request.headers)
            record = emulator.requests.add(
                RequestRecord(
                    "bedrock",
                    request.url.path,
                    without_credentials(headers),
                    request_id,
                )
            )
            record.stream = operation.endswith("stream")
            try:
                _authenticate(headers)
                requested = request.path_params["model_id"]
                model, suffix = split_model(requested)
                record.requested_model, record.model = requested, model
                faults = resolve(request.headers.get(FAULT_HEADER), suffix)
                record.faults = faults.source
                faults = emulator.fault_counter.apply(faults, (request.url.path, model, faults.source))
                body = parse_body(await request.body())
                record.body = body
                if faults.delay:
                    await asyncio.sleep(faults.delay)
                if faults.status is not None:
                    raise injected_error(faults)
                response = handler(Call(body, model, faults, request_id, emulator.prompt_cache))
            except ApiError as error:
                response = error_response(error, request_id)
            response.headers["x-amzn-requestid"] = request_id
            record.status = response.status_code
            return response

        return serve

    return [
        Route(
            f"/model/{{model_id:path}}/{operation}",
            endpoint(operation),
            methods=["POST"],
        )
        for operation in handlers
    ]
