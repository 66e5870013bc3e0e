"""``POST /v1/responses``: the Response object and its typed event stream.

A reasoning model's output starts with a ``reasoning`` item (no summary), then the message.
A reply cut by ``max_output_tokens`` is ``incomplete`` and its stream ends with
``response.incomplete`` instead of ``response.completed``, as the real API does.
``previous_response_id`` and ``conversation`` are echoed but not replayed into the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from starlette.responses import Response

from . import ids
from .call import Call
from .delivery import dumps, event_stream, json_response
from .openai_common import (
    CHECK,
    RESPONSES_ATTACHMENT_PARTS,
    RESPONSES_TEXT_PARTS,
    reasoning_effort,
    render_parts,
    responses_usage,
)
from .prompt import Prompt, PromptBuilder
from .prompt_cache import OPENAI_TTL
from .reply import Reply, plan_reply, reasoning_tokens
from .sse import named_event
from .validation import FieldPath

ROLES = ("system", "developer", "user", "assistant")
MIN_OUTPUT_TOKENS = 16
_ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "safety_identifier": None,
    "store": True,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


def _render_content(builder: PromptBuilder, content: Any, path: FieldPath) -> None:
    if isinstance(content, str):
        builder.text(content)
    else:
        render_parts(builder, content, path, RESPONSES_TEXT_PARTS, RESPONSES_ATTACHMENT_PARTS)


def _render_item(builder: PromptBuilder, item: dict[str, Any], path: FieldPath) -> None:
    kind = CHECK.field(item, (*path, "type"), "string") or "message"
    if kind == "message":
        role = CHECK.field(item, (*path, "role"), "string", required=True)
        CHECK.one_of((*path, "role"), role, ROLES)
        builder.open(role)
        content = CHECK.field(item, (*path, "content"), ("string", "array"), required=True)
        _render_content(builder, content, (*path, "content"))
    elif kind == "function_call_output":
        builder.open("tool")
        output = CHECK.field(item, (*path, "output"), ("string", "array"), required=True)
        _render_content(builder, output, (*path, "output"))
    elif kind == "reasoning":
        builder.open("assistant")
        render_parts(builder, item.get("summary") or [], (*path, "summary"), RESPONSES_TEXT_PARTS, frozenset())
    else:
        builder.open("assistant" if kind.endswith("_call") else "user")
        builder.json(item)
    builder.close()


def render_prompt(body: dict[str, Any]) -> Prompt:
    """Tools (JSON), instructions as a system message, then the input items."""
    builder = PromptBuilder()
    for tool in CHECK.objects(("tools",), CHECK.field(body, ("tools",), "array") or []):
        builder.json(tool)
    instructions = CHECK.field(body, ("instructions",), "string")
    if instructions:
        builder.open("system")
        builder.text(instructions)
        builder.close()
    items = CHECK.field(body, ("input",), ("string", "array"), required=True)
    if isinstance(items, str):
        builder.open("user")
        builder.text(items)
        builder.close()
    else:
        CHECK.non_empty(("input",), items)
        for index, item in enumerate(CHECK.objects(("input",), items)):
            _render_item(builder, item, ("input", index))
    return builder.build()


def handle(call: Call) -> Response:
    body = call.body
    prompt = render_prompt(body)
    stream = bool(CHECK.field(body, ("stream",), "boolean"))
    cap = CHECK.field(body, ("max_output_tokens",), "integer")
    CHECK.at_least(("max_output_tokens",), cap, MIN_OUTPUT_TOKENS)
    reasoning = CHECK.field(body, ("reasoning",), "object") or {}
    requested_effort = CHECK.field(reasoning, ("reasoning", "effort"), "string")
    effort = reasoning_effort(call.model, requested_effort, ("reasoning", "effort"))
    retention = CHECK.field(body, ("prompt_cache_retention",), "string")
    CHECK.one_of(("prompt_cache_retention",), retention, OPENAI_TTL)

    cached = call.cache.openai_cached_tokens(prompt, call.model, retention or "in_memory")
    seed = prompt.seed(call.model)
    reply = plan_reply(
        seed, cap=cap, reasoning=reasoning_tokens(seed, effort) if effort else 0, length=call.faults.reply
    )
    built = _Built(call, reply, effort, responses_usage(len(prompt), cached, reply.output_tokens, reply.reasoning))
    if stream:
        return event_stream(built.events(), call.faults, {})
    return json_response(built.response("incomplete" if reply.truncated else "completed"), call.faults, {})


class _Built:
    """One reply rendered as a Response object, or as the events that build it up."""

    def __init__(self, call: Call, reply: Reply, effort: str | None, usage: dict[str, Any]) -> None:
        self.call = call
        self.reply = reply
        self.effort = effort
        self.usage = usage
        self.response_id = ids.hex_id("resp_")
        self.message_id = ids.hex_id("msg_")
        self.reasoning_id = ids.hex_id("rs_") if effort else None
        self.message_index = 1 if effort else 0
        self.has_message = bool(reply.pieces) or not reply.truncated

    def _reasoning_item(self) -> dict[str, Any]:
        return {"id": self.reasoning_id, "type": "reasoning", "summary": []}

    def _text_part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _message(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def _output(self) -> list[dict[str, Any]]:
        output = [self._reasoning_item()] if self.reasoning_id else []
        if self.has_message:
            status = "incomplete" if self.reply.truncated else "completed"
            output.append(self._message(status, [self._text_part(self.reply.text)]))
        return output

    def response(self, status: str) -> dict[str, Any]:
        body = self.call.body
        finished = status in ("completed", "incomplete")
        response: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.call.created,
            "status": status,
            "background": False,
            "completed_at": self.call.created if finished else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "model": self.call.model,
            "output": self._output() if finished else [],
            "reasoning": {"effort": self.effort, "summary": None},
            "service_tier": "default",
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "usage": self.usage if finished else None,
        }
        for key, default in _ECHOED.items():
            value = body.get(key)
            response[key] = default if value is None else value
        return response

    def events(self) -> Iterator[bytes]:
        sequence = 0

        def event(kind: str, payload: dict[str, Any]) -> bytes:
            nonlocal sequence
            data = dumps({"type": kind, "sequence_number": sequence, **payload})
            sequence += 1
            return named_event(kind, data)

        yield event("response.created", {"response": self.response("in_progress")})
        yield event("response.in_progress", {"response": self.response("in_progress")})
        if self.reasoning_id:
            yield event("response.output_item.added", {"output_index": 0, "item": self._reasoning_item()})
            yield event("response.output_item.done", {"output_index": 0, "item": self._reasoning_item()})
        if self.has_message:
            yield from self._message_events(event)
        final = "response.incomplete" if self.reply.truncated else "response.completed"
        yield event(final, {"response": self.response(final.rpartition(".")[2])})

    def _message_events(self, event: Callable[[str, dict[str, Any]], bytes]) -> Iterator[bytes]:
        where = {"item_id": self.message_id, "output_index": self.message_index}
        added = self._message("in_progress", [])
        yield event("response.output_item.added", {"output_index": self.message_index, "item": added})
        yield event("response.content_part.added", {**where, "content_index": 0, "part": self._text_part("")})
        for piece in self.reply.pieces:
            yield event("response.output_text.delta", {**where, "content_index": 0, "delta": piece, "logprobs": []})
        text = self.reply.text
        yield event("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
        yield event("response.content_part.done", {**where, "content_index": 0, "part": self._text_part(text)})
        status = "incomplete" if self.reply.truncated else "completed"
        item = self._message(status, [self._text_part(text)])
        yield event("response.output_item.done", {"output_index": self.message_index, "item": item})
