"""Follow a provider's SSE stream event by event: learn its id and usage, stamp the last event.

Each tracker sees every event once, in order, as raw bytes, and returns the bytes to send on.
Only the final event (OpenAI chat's usage chunk, Responses' ``response.completed``,
Anthropic's ``message_stop``, Gemini's chunk with a ``finishReason``) is rewritten: ``xproxy_result`` is spliced into its JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Stamp = Callable[[], dict[str, Any]]

RESPONSES_FINAL = {"response.completed", "response.incomplete", "response.failed"}
RESPONSES_EVENTS = {b"response.created", *(name.encode() for name in RESPONSES_FINAL)}
MESSAGES_EVENTS = {b"message_start", b"message_delta", b"message_stop"}


def splice(document: bytes, name: str, value: Any) -> bytes:
    """``document`` (a JSON object's bytes) with one more top-level member, without re-encoding it."""
    body = document.rstrip()
    member = json.dumps(name).encode() + b":" + json.dumps(value, separators=(",", ":")).encode()
    inner = body[:-1].rstrip()
    return inner + (b"," if not inner.endswith(b"{") else b"") + member + b"}"


def parse_event(raw: bytes) -> tuple[bytes | None, bytes | None]:
    """The ``event:`` name and joined ``data:`` payload of one SSE event (None where absent)."""
    name = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, b"\n".join(data) if data else None


def render_event(name: bytes | None, data: bytes) -> bytes:
    head = b"event: " + name + b"\n" if name is not None else b""
    return head + b"data: " + data + b"\n\n"


class StreamTracker:
    """Base: collects ``provider_response_id``, ``model`` and ``usage`` from a stream."""

    def __init__(self) -> None:
        self.provider_response_id: str | None = None
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self.finished = False

    def feed(self, raw: bytes, stamp: Stamp) -> bytes:
        """Bytes to forward for this event; ``stamp()`` records the call and returns its result."""
        name, data = parse_event(raw)
        if data is None or data == b"[DONE]" or not self.relevant(name, data):
            return raw
        try:
            payload = json.loads(data)
        except ValueError:
            return raw
        if not isinstance(payload, dict) or not self.observe(payload):
            return raw
        self.finished = True
        return render_event(name, splice(data, "xproxy_result", stamp()))

    def relevant(self, name: bytes | None, data: bytes) -> bool:
        """Cheap byte test: could this event carry anything we need? (Skips most JSON parsing.)"""
        raise NotImplementedError

    def observe(self, payload: dict[str, Any]) -> bool:
        """Take what this event tells; True when it is the event that carries the result."""
        raise NotImplementedError


class ChatTracker(StreamTracker):
    """OpenAI chat completions: the chunk with a non-null ``usage`` is the last data chunk."""

    def relevant(self, name: bytes | None, data: bytes) -> bool:
        if self.provider_response_id is None:
            return True
        at = data.find(b'"usage"')
        return at >= 0 and not data[at + 7 : at + 14].lstrip(b": ").startswith(b"null")

    def observe(self, payload: dict[str, Any]) -> bool:
        if self.provider_response_id is None and isinstance(payload.get("id"), str):
            self.provider_response_id = payload["id"]
            self.model = payload.get("model")
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            return True
        return False


class ResponsesTracker(StreamTracker):
    """OpenAI Responses: ``response.created`` names it, a final ``response.*`` event has usage."""

    def relevant(self, name: bytes | None, data: bytes) -> bool:
        if name is not None:
            return name in RESPONSES_EVENTS
        return b'"type":"response.' in data[:40] or b'"type": "response.' in data[:40]

    def observe(self, payload: dict[str, Any]) -> bool:
        response = payload.get("response")
        if not isinstance(response, dict):
            return False
        if isinstance(response.get("id"), str):
            self.provider_response_id = response["id"]
            self.model = response.get("model") or self.model
        if isinstance(response.get("usage"), dict):
            self.usage = response["usage"]
        return payload.get("type") in RESPONSES_FINAL


class MessagesTracker(StreamTracker):
    """Anthropic: ``message_start`` has id and input usage, ``message_delta`` the output, ``message_stop`` ends."""

    def relevant(self, name: bytes | None, data: bytes) -> bool:
        return name in MESSAGES_EVENTS if name is not None else b'"type":"message_' in data[:40]

    def observe(self, payload: dict[str, Any]) -> bool:
        kind = payload.get("type")
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            message = payload["message"]
            self.provider_response_id = message.get("id")
            self.model = message.get("model")
            if isinstance(message.get("usage"), dict):
                self.usage = dict(message["usage"])
        elif kind == "message_delta" and isinstance(payload.get("usage"), dict):
            self.usage = {**(self.usage or {}), **{k: v for k, v in payload["usage"].items() if v is not None}}
        return kind == "message_stop"


class GeminiTracker(StreamTracker):
    """Gemini: every chunk carries the running ``usageMetadata``; the one with ``finishReason`` is the last."""

    def relevant(self, name: bytes | None, data: bytes) -> bool:
        return b'"finishReason"' in data or self.provider_response_id is None

    def observe(self, payload: dict[str, Any]) -> bool:
        if isinstance(payload.get("responseId"), str):
            self.provider_response_id = payload["responseId"]
            self.model = payload.get("modelVersion") or self.model
        if isinstance(payload.get("usageMetadata"), dict):
            self.usage = payload["usageMetadata"]
        candidates = payload.get("candidates") or [{}]
        return isinstance(candidates[0], dict) and bool(candidates[0].get("finishReason"))
