"""OpenAI's Chat Completions, Responses and Embeddings APIs (``api.openai.com/v1`` and gateways)."""

from __future__ import annotations

from typing import Any

from .base import ApiAdapter, Endpoint, Observation, Provider, loads, read_error
from .sse import SSEEvent


class OpenAIChat(ApiAdapter):
    """Chat Completions; a stream's usage needs ``stream_options.include_usage``, which we add and hide."""

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
            return True
        chunk = loads(data)
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
        if isinstance(chunk.get("usage"), dict):
            obs.usage = chunk["usage"]
            obs.complete = True
            if hiding and not choices:
                return False
        return True


class OpenAIResponses(ApiAdapter):
    """Responses: usage arrives on the terminal ``response.*`` event."""

    _TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def read_json(self, obs: Observation, data: Any) -> None:
        super().read_json(obs, data)
        if isinstance(data, dict) and data.get("status") == "failed" and isinstance(data.get("error"), dict):
            obs.error = str(data["error"].get("message") or data["error"])

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        name = event.event or ""
        if name == "response.output_text.delta" or name.endswith(".delta"):
            obs.deltas += 1
            return True
        if name in self._TERMINAL or name == "response.created" or name == "error" or not name:
            payload = loads(event.data) if event.data else None
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
    """Embeddings: one JSON body with ``usage.prompt_tokens``; the base reader does it all."""


ENDPOINTS = (
    Endpoint("/chat/completions", "chat", OpenAIChat),
    Endpoint("/responses", "responses", OpenAIResponses),
    Endpoint("/embeddings", "embeddings", OpenAIEmbeddings),
)

PROVIDER = Provider(
    name="openai",
    category="system.openai",
    bases=("https://api.openai.com/v1",),
    endpoints=ENDPOINTS,
    proxy_prefix="/api/v1/proxy/openai/v1",
    public_base="https://api.openai.com",
    optional_prefix="/v1",
)
