"""``POST /v1/chat/completions``: JSON and ``data:`` chunk streams, as the openai SDK parses them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.responses import Response

from . import ids
from .call import Call
from .delivery import dumps, event_stream, json_response
from .errors import ApiError
from .openai_common import (
    CHAT_ATTACHMENT_PARTS,
    CHAT_TEXT_PARTS,
    CHECK,
    SYSTEM_FINGERPRINT,
    chat_usage,
    reasoning_effort,
    render_parts,
)
from .prompt import Prompt, PromptBuilder
from .prompt_cache import OPENAI_TTL
from .reply import Reply, plan_reply, reasoning_tokens
from .sse import DONE, data_event

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_CHOICES = 128
_CHOICE_SEED_STEP = 0x9E3779B97F4A7C15
_SEED_MASK = (1 << 64) - 1


def render_prompt(body: dict[str, Any]) -> Prompt:
    """Tools and functions (as JSON), then every message with its framing."""
    builder = PromptBuilder()
    for key in ("tools", "functions"):
        for definition in CHECK.objects((key,), CHECK.field(body, (key,), "array") or []):
            builder.json(definition)
    messages = CHECK.field(body, ("messages",), "array", required=True)
    CHECK.non_empty(("messages",), messages)
    for index, message in enumerate(CHECK.objects(("messages",), messages)):
        path = ("messages", index)
        role = CHECK.field(message, (*path, "role"), "string", required=True)
        CHECK.one_of((*path, "role"), role, ROLES)
        builder.open(role, CHECK.field(message, (*path, "name"), "string"))
        content = CHECK.field(message, (*path, "content"), ("string", "array"), required=role != "assistant")
        if isinstance(content, str):
            builder.text(content)
        elif content is not None:
            render_parts(builder, content, (*path, "content"), CHAT_TEXT_PARTS, CHAT_ATTACHMENT_PARTS)
        for key in ("tool_calls", "function_call"):
            if message.get(key) is not None:
                builder.json(message[key])
        builder.close()
    return builder.build()


def _token_cap(body: dict[str, Any]) -> int | None:
    caps = [CHECK.field(body, (key,), "integer") for key in ("max_completion_tokens", "max_tokens")]
    for key, cap in zip(("max_completion_tokens", "max_tokens"), caps):
        CHECK.at_least((key,), cap, 1)
    return caps[0] if caps[0] is not None else caps[1]


def _include_usage(body: dict[str, Any], stream: bool) -> bool:
    options = CHECK.field(body, ("stream_options",), "object")
    if options is None:
        return False
    if not stream:
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    return bool(CHECK.field(options, ("stream_options", "include_usage"), "boolean"))


def handle(call: Call) -> Response:
    body = call.body
    prompt = render_prompt(body)
    stream = bool(CHECK.field(body, ("stream",), "boolean"))
    include_usage = _include_usage(body, stream)
    cap = _token_cap(body)
    choices = CHECK.field(body, ("n",), "integer") or 1
    CHECK.at_least(("n",), choices, 1)
    if choices > MAX_CHOICES:
        raise CHECK.invalid(("n",), f"at most {MAX_CHOICES} choices per request.")
    effort = reasoning_effort(call.model, CHECK.field(body, ("reasoning_effort",), "string"), ("reasoning_effort",))
    retention = CHECK.field(body, ("prompt_cache_retention",), "string")
    CHECK.one_of(("prompt_cache_retention",), retention, OPENAI_TTL)

    cached = call.cache.openai_cached_tokens(prompt, call.model, retention or "in_memory")
    seed = prompt.seed(call.model)
    replies = []
    for index in range(choices):
        choice_seed = (seed + index * _CHOICE_SEED_STEP) & _SEED_MASK
        reasoning = reasoning_tokens(choice_seed, effort) if effort else 0
        replies.append(plan_reply(choice_seed, cap=cap, reasoning=reasoning, length=call.faults.reply))
    usage = chat_usage(
        len(prompt),
        cached,
        sum(reply.output_tokens for reply in replies),
        sum(reply.reasoning for reply in replies),
    )
    completion_id = ids.chat_completion_id()
    if stream:
        return event_stream(_chunks(call, completion_id, replies, usage, include_usage), call.faults, {})
    return json_response(_completion(call, completion_id, replies, usage), call.faults, {})


def _finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def _completion(call: Call, completion_id: str, replies: list[Reply], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
            for index, reply in enumerate(replies)
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _chunks(
    call: Call, completion_id: str, replies: list[Reply], usage: dict[str, Any], include_usage: bool
) -> Iterator[bytes]:
    """Role chunk, one chunk per token, a finish chunk per choice, the usage chunk, ``[DONE]``.

    Chunks are spliced from a fixed head and tail so each costs one small ``dumps``.
    """
    head = (
        f'{{"id":"{completion_id}","object":"chat.completion.chunk","created":{call.created},'
        f'"model":{dumps(call.model)},"service_tier":"default","system_fingerprint":"{SYSTEM_FINGERPRINT}",'
        '"choices":['
    )
    tail = '],"usage":null}' if include_usage else "]}"
    for index, reply in enumerate(replies):
        yield data_event(
            f'{head}{{"index":{index},"delta":{{"role":"assistant","content":"","refusal":null}},'
            f'"logprobs":null,"finish_reason":null}}{tail}'
        )
        for piece in reply.pieces:
            delta = f'{{"content":{dumps(piece)}}}'
            yield data_event(f'{head}{{"index":{index},"delta":{delta},"logprobs":null,"finish_reason":null}}{tail}')
        yield data_event(
            f'{head}{{"index":{index},"delta":{{}},"logprobs":null,"finish_reason":"{_finish_reason(reply)}"}}{tail}'
        )
    if include_usage:
        yield data_event(f'{head}],"usage":{dumps(usage)}}}')
    yield DONE
