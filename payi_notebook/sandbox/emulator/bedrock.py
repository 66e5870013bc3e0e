"""Bedrock runtime in the emulator: errors, Converse prompts and replies (Converse, ConverseStream).

Served at ``/model/{modelId}/...`` (``bedrock_serve.py``) in Bedrock's REST JSON and its binary
event stream, so boto3 (``endpoint_url=<emulator>``, any credentials: signatures are not
checked) parses the answers. Converse prompts cache at ``cachePoint`` blocks, by the Anthropic
rules of the prompt cache (ttl ``5m`` unless the block says ``1h``). InvokeModel's model
families are in ``bedrock_invoke.py``. Errors are Bedrock's: ``{"message"}`` with
``x-amzn-ErrorType`` (a 429 is a ``ThrottlingException``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from starlette.responses import Response

from payi_notebook.providers import eventstream

from .call import Call
from .delivery import dumps, event_stream, json_response
from .errors import ApiError
from .prompt import Prompt, PromptBuilder
from .prompt_cache import ANTHROPIC_TTL, CacheUsage
from .reply import Reply, plan_reply

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


def authenticate(headers: dict[str, str]) -> None:
    if not headers.get("authorization", "").strip():
        raise BedrockError(403, "Missing Authentication Token", "MissingAuthenticationTokenException")


def body_field(body: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
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
    system = body_field(body, "system", list) or []
    if system:
        builder.open("system")
        for block in system:
            _block(builder, block)
        builder.close()
    messages = body_field(body, "messages", list, required=True)
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


# -- replies ----------------------------------------------------------------------------------


class Answer:
    """One reply: its text pieces, the fresh prompt tokens and the cache counts."""

    def __init__(self, reply: Reply, fresh: int, cache: CacheUsage) -> None:
        self.reply = reply
        self.cache = cache
        self.fresh = fresh
        self.stop = "max_tokens" if reply.truncated else "end_turn"
        self.started = time.perf_counter()

    @classmethod
    def plan(cls, call: Call, prompt: Prompt, cap: int | None, cache: CacheUsage) -> Answer:
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


def _converse_answer(call: Call) -> Answer:
    prompt = converse_prompt(call.body)
    config = body_field(call.body, "inferenceConfig", dict) or {}
    cache = call.cache.anthropic_usage(prompt, call.model)
    return Answer.plan(call, prompt, config.get("maxTokens"), cache)


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

    return event_reply(events(), call)


def event_reply(events: Iterator[bytes], call: Call) -> Response:
    return event_stream(events, call.faults, {}, media_type=eventstream.CONTENT_TYPE)
