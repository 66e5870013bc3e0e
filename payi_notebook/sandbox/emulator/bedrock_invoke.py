"""Bedrock's InvokeModel in the emulator: the model family's own body, chosen by the model id.

Anthropic Messages (as ``AnthropicBedrock`` sends it), Amazon Nova (Converse-like, with
``usage.cacheRead/WriteInputTokenCount``), Meta Llama (``prompt``; ``prompt_token_count``) and
OpenAI gpt-oss (a chat completions body). JSON answers carry the ``x-amzn-bedrock-*-token-count``
headers; every invoke stream is ``chunk`` events (base64 JSON) ending with a chunk holding
``amazon-bedrock-invocationMetrics``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from starlette.responses import Response

from payi_notebook.providers import eventstream

from . import anthropic_messages, ids
from .bedrock import Answer, BedrockError, body_field, converse_prompt, event_reply
from .call import Call
from .delivery import dumps, json_response
from .prompt import Prompt, PromptBuilder
from .prompt_cache import CacheUsage

FAMILIES = ("anthropic", "nova", "llama", "openai")


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


def _text_prompt(text: str) -> Prompt:
    builder = PromptBuilder()
    builder.text(text)
    builder.end_block()
    return builder.build()


def _openai_prompt(body: dict[str, Any]) -> Prompt:
    builder = PromptBuilder()
    for message in body_field(body, "messages", list, required=True):
        builder.open(str(message.get("role", "user")))
        content = message.get("content")
        builder.text(content) if isinstance(content, str) else builder.json(content)
        builder.close()
    return builder.build()


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
        cap = (body_field(body, "inferenceConfig", dict) or {}).get("maxTokens")
        cache = call.cache.anthropic_usage(prompt, call.model)
    elif kind == "llama":
        prompt, cap, cache = (
            _text_prompt(body_field(body, "prompt", str, required=True)),
            body.get("max_gen_len"),
            CacheUsage(),
        )
    else:
        prompt, cap, cache = (
            _openai_prompt(body),
            body.get("max_completion_tokens") or body.get("max_tokens"),
            CacheUsage(),
        )
    answer = Answer.plan(call, prompt, cap, cache)
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

    return event_reply(chunks(), call)


def _invoke_anthropic(call: Call, stream: bool) -> Response:
    message = anthropic_messages.message_for(call)
    cache = CacheUsage(
        read=message.input_usage["cache_read_input_tokens"],
        write_5m=message.cache_creation["ephemeral_5m_input_tokens"],
        write_1h=message.cache_creation["ephemeral_1h_input_tokens"],
    )
    answer = Answer(message.reply, message.input_usage["input_tokens"], cache)
    if not stream:
        return json_response(message.body(), call.faults, answer.count_headers())

    def chunks() -> Iterator[bytes]:
        for payload in _sse_payloads(message.events()):
            if payload.get("type") == "message_stop":
                payload["amazon-bedrock-invocationMetrics"] = answer.metrics()
            yield _chunk(payload)

    return event_reply(chunks(), call)


def _nova(answer: Answer, call: Call) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
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
        for piece in answer.reply.pieces:
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


def _llama(answer: Answer, call: Call) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
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


def _gpt_oss(answer: Answer, call: Call) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
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
