"""``POST /v1/messages``: Anthropic's Message object and its named event stream.

The prompt is tools, then the system prompt, then messages, with a block end after each
tool, system block and content block; ``cache_control`` on any of them is a breakpoint.
With ``thinking`` enabled (or adaptive) the reply starts with a thinking block whose tokens
count as output, reported as well in ``usage.output_tokens_details.thinking_tokens``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

from starlette.responses import Response

from . import ids
from .call import Call
from .delivery import dumps, event_stream, json_response
from .errors import ApiError, require_credential
from .prompt import Prompt, PromptBuilder
from .prompt_cache import ANTHROPIC_TTL, CacheUsage
from .reply import Reply, plan_reply, reasoning_tokens
from .sse import named_event
from .text import reply_pieces
from .validation import Checker, FieldPath

CHECK = Checker("anthropic")
ROLES = ("user", "assistant")
MAX_BREAKPOINTS = 4
MIN_THINKING_BUDGET = 1024
THINKING_TYPES = ("enabled", "disabled", "adaptive")
TEXT_BLOCKS = {"text": "text", "thinking": "thinking"}
ATTACHMENT_BLOCKS = frozenset({"image", "document", "redacted_thinking", "search_result", "container_upload"})
THINKING_DELTA_PIECES = 16
_THINKING_SEED = 0x5DEECE66D


def authenticate(headers: dict[str, str]) -> None:
    """Anthropic wants ``x-api-key`` (or a bearer token); any non-empty value will do here."""
    require_credential(headers, ("x-api-key",), "x-api-key header is required (any non-empty key works with the emulator).")


class _Renderer:
    """Builds the prompt and checks ``cache_control`` the way the real API does."""

    def __init__(self) -> None:
        self.builder = PromptBuilder()
        self.ttls: list[str] = []

    def end_block(self, block: dict[str, Any], path: FieldPath) -> None:
        control = CHECK.field(block, (*path, "cache_control"), "object")
        if control is None:
            self.builder.end_block()
            return
        kind = CHECK.field(control, (*path, "cache_control", "type"), "string", required=True)
        CHECK.one_of((*path, "cache_control", "type"), kind, ["ephemeral"])
        ttl = CHECK.field(control, (*path, "cache_control", "ttl"), "string") or "5m"
        CHECK.one_of((*path, "cache_control", "ttl"), ttl, ANTHROPIC_TTL)
        if ttl == "1h" and "5m" in self.ttls:
            raise CHECK.invalid(
                (*path, "cache_control", "ttl"), "a ttl='1h' cache_control must not come after a ttl='5m' one"
            )
        self.ttls.append(ttl)
        self.builder.end_block(ttl)

    def block(self, block: dict[str, Any], path: FieldPath) -> None:
        kind = CHECK.field(block, (*path, "type"), "string", required=True)
        if kind in TEXT_BLOCKS:
            self.builder.text(CHECK.field(block, (*path, TEXT_BLOCKS[kind]), "string", required=True))
        elif kind == "tool_use" or kind == "server_tool_use":
            self.builder.text(CHECK.field(block, (*path, "name"), "string", required=True))
            self.builder.json(block.get("input", {}))
        elif kind == "tool_result":
            content = CHECK.field(block, (*path, "content"), ("string", "array"))
            if isinstance(content, str):
                self.builder.text(content)
            elif content:
                for index, inner in enumerate(CHECK.objects((*path, "content"), content)):
                    self.block(inner, (*path, "content", index))
        elif kind in ATTACHMENT_BLOCKS:
            source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
            if source.get("type") == "text" and isinstance(source.get("data"), str):
                self.builder.text(source["data"])
            else:
                self.builder.attachment(dumps({key: value for key, value in block.items() if key != "cache_control"}))
        else:
            CHECK.one_of((*path, "type"), kind, [*TEXT_BLOCKS, "tool_use", "tool_result", *sorted(ATTACHMENT_BLOCKS)])

    def blocks(self, content: str | list[Any], path: FieldPath) -> None:
        if isinstance(content, str):
            self.builder.text(content)
            self.builder.end_block()
            return
        for index, block in enumerate(CHECK.objects(path, content)):
            self.block(block, (*path, index))
            self.end_block(block, (*path, index))


def render_prompt(body: dict[str, Any]) -> Prompt:
    renderer = _Renderer()
    builder = renderer.builder
    for index, tool in enumerate(CHECK.objects(("tools",), CHECK.field(body, ("tools",), "array") or [])):
        builder.json({key: value for key, value in tool.items() if key != "cache_control"})
        renderer.end_block(tool, ("tools", index))
    system = CHECK.field(body, ("system",), ("string", "array"))
    if system:
        builder.open("system")
        renderer.blocks(system, ("system",))
        builder.close()
    messages = CHECK.field(body, ("messages",), "array", required=True)
    CHECK.non_empty(("messages",), messages)
    for index, message in enumerate(CHECK.objects(("messages",), messages)):
        path = ("messages", index)
        role = CHECK.field(message, (*path, "role"), "string", required=True)
        if role == "system":
            raise CHECK.invalid(
                (*path, "role"), 'Unexpected role "system". Put the system prompt in the top-level `system` parameter.'
            )
        CHECK.one_of((*path, "role"), role, ROLES)
        builder.open(role)
        content = CHECK.field(message, (*path, "content"), ("string", "array"), required=True)
        renderer.blocks(content, (*path, "content"))
        builder.close()
    found = len(renderer.ttls)
    if found > MAX_BREAKPOINTS:
        raise ApiError(400, f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}.")
    return builder.build()


def _thinking_tokens(body: dict[str, Any], max_tokens: int, seed: int) -> int | None:
    """Thinking tokens to spend, or None when thinking is off."""
    thinking = CHECK.field(body, ("thinking",), "object")
    if thinking is None:
        return None
    kind = CHECK.field(thinking, ("thinking", "type"), "string", required=True)
    CHECK.one_of(("thinking", "type"), kind, THINKING_TYPES)
    if kind == "disabled":
        return None
    tokens = reasoning_tokens(seed)
    if kind == "enabled":
        budget = CHECK.field(thinking, ("thinking", "budget_tokens"), "integer", required=True)
        CHECK.at_least(("thinking", "budget_tokens"), budget, MIN_THINKING_BUDGET)
        if budget >= max_tokens:
            raise ApiError(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")
        tokens = min(tokens, budget)
    return tokens


def message_for(call: Call) -> _Message:
    """The reply to a Messages request body (also what Bedrock's InvokeModel answers for Claude)."""
    body = call.body
    max_tokens = CHECK.field(body, ("max_tokens",), "integer", required=True)
    CHECK.at_least(("max_tokens",), max_tokens, 1)
    prompt = render_prompt(body)
    seed = prompt.seed(call.model)
    thinking = _thinking_tokens(body, max_tokens, seed)
    cache = call.cache.anthropic_usage(prompt, call.model)
    reply = plan_reply(seed, cap=max_tokens, reasoning=thinking or 0, length=call.faults.reply)
    return _Message(call, reply, thinking is not None, seed, len(prompt), cache)


def handle(call: Call) -> Response:
    stream = bool(CHECK.field(call.body, ("stream",), "boolean"))
    message = message_for(call)
    if stream:
        return event_stream(message.events(), call.faults, {})
    return json_response(message.body(), call.faults, {})


def count_tokens(call: Call) -> Response:
    """``POST /v1/messages/count_tokens``: the prompt's input tokens, as a call would bill them (free)."""
    return json_response({"input_tokens": len(render_prompt(call.body))}, call.faults, {})


class _Message:
    """One reply as a Message object, or as the events that build it up."""

    def __init__(
        self, call: Call, reply: Reply, thinking: bool, seed: int, prompt_tokens: int, cache: CacheUsage
    ) -> None:
        self.call = call
        self.reply = reply
        self.thinking = thinking
        self.message_id = ids.anthropic_message_id()
        self.input_usage = {
            "input_tokens": prompt_tokens - cache.read - cache.write,
            "cache_creation_input_tokens": cache.write,
            "cache_read_input_tokens": cache.read,
        }
        self.cache_creation = {"ephemeral_5m_input_tokens": cache.write_5m, "ephemeral_1h_input_tokens": cache.write_1h}
        thinking_seed = seed ^ _THINKING_SEED
        self.thinking_pieces = reply_pieces(thinking_seed, reply.reasoning) if thinking else []
        self.signature = base64.b64encode(hashlib.blake2b(thinking_seed.to_bytes(8, "big")).digest()).decode()
        self.stop_reason = "max_tokens" if reply.truncated else "end_turn"

    def usage(self, output_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            **self.input_usage,
            "cache_creation": self.cache_creation,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        if self.thinking:
            usage["output_tokens_details"] = {"thinking_tokens": self.reply.reasoning}
        return usage

    def _content(self) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if self.thinking:
            content.append({"type": "thinking", "thinking": "".join(self.thinking_pieces), "signature": self.signature})
        if self.reply.pieces or not self.reply.truncated:
            content.append({"type": "text", "text": self.reply.text})
        return content

    def _envelope(self, content: list[dict[str, Any]], stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.call.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": self.usage(output_tokens),
        }

    def body(self) -> dict[str, Any]:
        return self._envelope(self._content(), self.stop_reason, self.reply.output_tokens)

    def events(self) -> Iterator[bytes]:
        def event(kind: str, payload: dict[str, Any]) -> bytes:
            return named_event(kind, dumps({"type": kind, **payload}))

        yield event("message_start", {"message": self._envelope([], None, 1)})
        index = 0
        if self.thinking:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            yield event("content_block_start", {"index": 0, "content_block": block})
            yield event("ping", {})
            pieces = self.thinking_pieces
            for start in range(0, len(pieces), THINKING_DELTA_PIECES):
                chunk = "".join(pieces[start : start + THINKING_DELTA_PIECES])
                yield event("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": chunk}})
            signature = {"type": "signature_delta", "signature": self.signature}
            yield event("content_block_delta", {"index": 0, "delta": signature})
            yield event("content_block_stop", {"index": 0})
            index = 1
        if self.reply.pieces or not self.reply.truncated:
            yield event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            if index == 0:
                yield event("ping", {})
            for piece in self.reply.pieces:
                yield event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
            yield event("content_block_stop", {"index": index})
        final_usage = self.usage(self.reply.output_tokens)
        del final_usage["cache_creation"], final_usage["service_tier"]
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        yield event("message_delta", {"delta": delta, "usage": final_usage})
        yield event("message_stop", {})
