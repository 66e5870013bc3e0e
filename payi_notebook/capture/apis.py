"""What capture reads from each provider API: usage, response id, errors, ``xproxy_result``.

One adapter per (provider, operation). Adapters see the parsed request body once, each
JSON response, or each server-sent event of a stream as it passes; they accumulate into an
``Observation`` and may ask for an event to be hidden from the caller (the usage chunk we
requested on the caller's behalf). Events are only JSON-decoded when they can carry
something we need, which keeps the per-event cost of the tee small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .sse import SSEEvent


@dataclass(slots=True)
class Observation:
    """What one exchange revealed so far."""

    usage: dict[str, Any] | None = None
    response_id: str | None = None
    model: str | None = None
    xproxy_result: dict[str, Any] | None = None
    xproxy_error: dict[str, Any] | None = None
    error: str | None = None
    deltas: int = 0  # content events seen (a lower bound on output tokens when usage never came)
    complete: bool = False  # the terminal event (with final usage) arrived
    chunks: list[str] | None = None  # event payloads kept for prompt/response logging
    first_delta_at: float | None = None


def _loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def read_error(obs: Observation, body: Any) -> None:
    """Provider or Pay-i error bodies: keep the message, the Pay-i error and result."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("xproxy_result"), dict):
        obs.xproxy_result = body["xproxy_result"]
    if isinstance(body.get("xproxy_error"), dict):
        obs.xproxy_error = body["xproxy_error"]
    err = body.get("error")
    if isinstance(err, dict) and err.get("message"):
        obs.error = str(err["message"])
    elif isinstance(err, str):
        obs.error = err
    elif obs.xproxy_error and obs.xproxy_error.get("message"):
        obs.error = str(obs.xproxy_error["message"])
    elif body.get("message"):
        obs.error = str(body["message"])


class ApiAdapter:
    """Base adapter. Subclasses set the class attributes and override the readers."""

    provider: str = ""
    operation: str = ""
    category: str = ""
    streams: bool = True
    always_streams: bool = False  # the operation itself streams (Bedrock's), whatever the body says
    proxyable: bool = True  # Pay-i has a proxy route for it

    def read_headers(self, obs: Observation, headers: Any) -> None:
        """The response headers (a mapping, or pairs read back from the journal)."""

    def prepare(self, body: dict[str, Any]) -> bool:
        """Adjust the outgoing body in place; True when it was changed (and events may be hidden)."""
        return False

    def read_json(self, obs: Observation, data: Any) -> None:
        """A complete JSON response body."""
        if not isinstance(data, dict):
            return
        obs.response_id = data.get("id") or obs.response_id
        obs.model = data.get("model") or obs.model
        if isinstance(data.get("usage"), dict):
            obs.usage = data["usage"]
            obs.complete = True
        if isinstance(data.get("xproxy_result"), dict):
            obs.xproxy_result = data["xproxy_result"]

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        """One stream event; return False to keep it from the caller."""
        return True

    def may_hide(self, raw: bytes) -> bool:
        """Whether ``read_event`` might drop this raw event (then it is read before it is passed on)."""
        return False

    @staticmethod
    def _proxy_result(obs: Observation, data: str, parsed: Any = None) -> None:
        if "xproxy_result" in data:
            parsed = parsed if parsed is not None else _loads(data)
            if isinstance(parsed, dict) and isinstance(parsed.get("xproxy_result"), dict):
                obs.xproxy_result = parsed["xproxy_result"]


class OpenAIChat(ApiAdapter):
    provider, operation, category = "openai", "chat", "system.openai"

    def may_hide(self, raw: bytes) -> bool:
        return b'"usage":{' in raw or b'"usage": {' in raw

    def prepare(self, body: dict[str, Any]) -> bool:
        if not body.get("stream"):
            return False
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return False
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return True

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        data = event.data
        if not data or data == "[DONE]":
            return True
        first = obs.response_id is None
        has_usage = '"usage"' in data and '"usage":null' not in data and '"usage": null' not in data
        if not (first or has_usage or '"error"' in data or "xproxy_result" in data):
            obs.deltas += 1
            if obs.first_delta_at is None:
                obs.first_delta_at = now
            return True
        chunk = _loads(data)
        if not isinstance(chunk, dict):
            return True
        if "error" in chunk and "choices" not in chunk:
            read_error(obs, chunk)
            return True
        obs.response_id = obs.response_id or chunk.get("id")
        obs.model = obs.model or chunk.get("model")
        self._proxy_result(obs, data, chunk)
        choices = chunk.get("choices")
        if choices:
            obs.deltas += 1
            if obs.first_delta_at is None:
                obs.first_delta_at = now
        if isinstance(chunk.get("usage"), dict):
            obs.usage = chunk["usage"]
            obs.complete = True
            if hiding and not choices:
                return False
        return True


class OpenAIResponses(ApiAdapter):
    provider, operation, category = "openai", "responses", "system.openai"
    _TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def read_json(self, obs: Observation, data: Any) -> None:
        super().read_json(obs, data)
        if isinstance(data, dict) and data.get("status") == "failed" and isinstance(data.get("error"), dict):
            obs.error = str(data["error"].get("message") or data["error"])

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        name = event.event or ""
        if name == "response.output_text.delta" or name.endswith(".delta"):
            obs.deltas += 1
            if obs.first_delta_at is None:
                obs.first_delta_at = now
            return True
        if name in self._TERMINAL or name == "response.created" or name == "error" or not name:
            payload = _loads(event.data) if event.data else None
            if not isinstance(payload, dict):
                return True
            self._proxy_result(obs, event.data, payload)
            kind = name or payload.get("type", "")
            response = payload.get("response")
            if isinstance(response, dict):
                obs.response_id = obs.response_id or response.get("id")
                obs.model = obs.model or response.get("model")
                if isinstance(response.get("usage"), dict):
                    obs.usage = response["usage"]
                if kind in self._TERMINAL:
                    obs.complete = True
                    if isinstance(response.get("error"), dict):
                        obs.error = str(response["error"].get("message") or response["error"])
            if kind == "error":
                obs.error = str(payload.get("message") or payload.get("error") or "stream error")
        elif "xproxy_result" in event.data:
            self._proxy_result(obs, event.data)
        return True


class OpenAIEmbeddings(ApiAdapter):
    provider, operation, category = "openai", "embeddings", "system.openai"
    streams = False


class AnthropicMessages(ApiAdapter):
    provider, operation, category = "anthropic", "messages", "system.anthropic"

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        name = event.event
        if name == "content_block_delta":
            obs.deltas += 1
            if obs.first_delta_at is None:
                obs.first_delta_at = now
            return True
        if name in ("ping", "content_block_start", "content_block_stop"):
            return True
        payload = _loads(event.data) if event.data else None
        if not isinstance(payload, dict):
            return True
        self._proxy_result(obs, event.data, payload)
        kind = name or payload.get("type")
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            message = payload["message"]
            obs.response_id = message.get("id") or obs.response_id
            obs.model = message.get("model") or obs.model
            if isinstance(message.get("usage"), dict):
                obs.usage = dict(message["usage"])
        elif kind == "message_delta" and isinstance(payload.get("usage"), dict):
            merged = dict(obs.usage or {})
            merged.update({k: v for k, v in payload["usage"].items() if v is not None})
            obs.usage = merged
            obs.complete = True
        elif kind == "error":
            read_error(obs, payload)
        return True


ADAPTERS: dict[tuple[str, str], type[ApiAdapter]] = {
    ("openai", "chat"): OpenAIChat,
    ("openai", "responses"): OpenAIResponses,
    ("openai", "embeddings"): OpenAIEmbeddings,
    ("anthropic", "messages"): AnthropicMessages,
}
