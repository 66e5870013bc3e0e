"""Anthropic's Messages API (``api.anthropic.com``); Foundry and Vertex reuse its adapter."""

from __future__ import annotations

from .base import ApiAdapter, Endpoint, Observation, Provider, loads, read_error
from .sse import SSEEvent


class AnthropicMessages(ApiAdapter):
    """``message_start`` carries id, model and input usage; ``message_delta`` the output."""

    wire = "anthropic"

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        name = event.event
        if name == "content_block_delta":
            obs.deltas += 1
            return True
        if name in ("ping", "content_block_start", "content_block_stop"):
            return True
        payload = loads(event.data) if event.data else None
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


PROVIDER = Provider(
    name="anthropic",
    category="system.anthropic",
    bases=("https://api.anthropic.com",),
    endpoints=(Endpoint("/v1/messages", "messages", AnthropicMessages),),
    proxy_prefix="/api/v1/proxy/anthropic",
    public_base="https://api.anthropic.com",
)
