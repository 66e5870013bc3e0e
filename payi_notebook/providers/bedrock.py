"""AWS Bedrock: which requests are Bedrock calls, and what capture reads from each operation.

One route shape serves boto3 (through botocore) and ``anthropic.AnthropicBedrock`` (through
httpx2): ``/model/{model}/converse|converse-stream|invoke|invoke-with-response-stream`` on
``bedrock-runtime.<region>.amazonaws.com`` (any host for a boto3 ``bedrock-runtime`` client:
VPC endpoints, the emulator; ``routes.client_route``). The model id is matched encoded, as
it was signed (an ARN's ``/`` is ``%2F``), and decoded in ``Route.params``. ``AnthropicBedrockMantle`` and ``openai.BedrockOpenAI`` speak
the Anthropic and OpenAI wire formats on Bedrock hosts; their adapters are those formats'
own, billed as Bedrock. Pay-i's proxy has routes for the four model operations only (``proxy=False`` on the others).

Usage, per operation: Converse's ``usage``; ConverseStream's ``metadata`` event; InvokeModel's
model-native body (Anthropic, Nova, Llama, OpenAI-OSS) or, without reading the caller's body,
the ``x-amzn-bedrock-*-token-count`` response headers; InvokeModelWithResponseStream's
``amazon-bedrock-invocationMetrics`` in its last chunk (for Anthropic models, the Messages
events themselves, which carry the cache-write split). The response id is the request id
(``x-amzn-requestid``), as Pay-i's SDK reports it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from .. import xproxy
from .anthropic import AnthropicMessages
from .base import ApiAdapter, Endpoint, Observation, Provider, loads
from .openai import OpenAIChat, OpenAIResponses
from .sse import SSEEvent

_HEADER_UNITS = (
    ("x-amzn-bedrock-input-token-count", "inputTokens"),
    ("x-amzn-bedrock-output-token-count", "outputTokens"),
    ("x-amzn-bedrock-cache-read-input-token-count", "cacheReadInputTokens"),
    ("x-amzn-bedrock-cache-write-input-token-count", "cacheWriteInputTokens"),
)
_METRICS = "amazon-bedrock-invocationMetrics"
_METRIC_UNITS = (
    ("inputTokenCount", "inputTokens"),
    ("outputTokenCount", "outputTokens"),
    ("cacheReadInputTokenCount", "cacheReadInputTokens"),
    ("cacheWriteInputTokenCount", "cacheWriteInputTokens"),
)


def header(headers: Any, name: str) -> str | None:
    """One response header from an httpx/botocore mapping or a journalled list of pairs."""
    if headers is None:
        return None
    if hasattr(headers, "get"):
        return headers.get(name)
    return next((value for key, value in headers if key.lower() == name), None)


def usage_from_headers(headers: Any) -> dict[str, int] | None:
    """InvokeModel's token counts from its response headers (Bedrock sends them for every model)."""
    usage: dict[str, int] = {}
    for name, key in _HEADER_UNITS:
        value = header(headers, name)
        if value is not None and value.strip().isdigit():
            usage[key] = int(value)
    return usage if "inputTokens" in usage or "outputTokens" in usage else None


def usage_from_metrics(metrics: Any) -> dict[str, int] | None:
    if not isinstance(metrics, Mapping):
        return None
    return {key: int(metrics[name]) for name, key in _METRIC_UNITS if isinstance(metrics.get(name), int)}


def invoke_usage(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The usage in an InvokeModel body, by model family, in a shape ``units_for`` knows."""
    usage = body.get("usage")
    if isinstance(usage, Mapping):
        if "inputTokens" in usage or "outputTokens" in usage:  # Amazon Nova
            return {
                "inputTokens": usage.get("inputTokens"),
                "outputTokens": usage.get("outputTokens"),
                "cacheReadInputTokens": usage.get("cacheReadInputTokenCount") or usage.get("cacheReadInputTokens"),
                "cacheWriteInputTokens": usage.get("cacheWriteInputTokenCount") or usage.get("cacheWriteInputTokens"),
            }
        return dict(usage)  # Anthropic (input_tokens, cache_*) or OpenAI-OSS (prompt_tokens, ...)
    if "prompt_token_count" in body or "generation_token_count" in body:  # Meta Llama
        return {
            "inputTokens": body.get("prompt_token_count"),
            "outputTokens": body.get("generation_token_count"),
        }
    return None


class _BedrockAdapter(ApiAdapter):
    wire = "bedrock"

    def read_headers(self, obs: Observation, headers: Any) -> None:
        """The request id is the response id (as Pay-i's SDK reports Bedrock calls), over a body's own."""
        obs.response_id = header(headers, "x-amzn-requestid") or obs.response_id

    def _delta(self, obs: Observation, now: float) -> None:
        obs.deltas += 1


def _error(obs: Observation, event: SSEEvent) -> None:
    """An exception message inside the stream (``error:throttlingException`` ...)."""
    payload = loads(event.data)
    message = payload.get("message") if isinstance(payload, dict) else None
    obs.error = f"{(event.event or 'error:')[6:]}: {message or event.data}"


class Converse(_BedrockAdapter):
    def read_json(self, obs: Observation, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if isinstance(data.get("usage"), dict):
            obs.usage = data["usage"]
            obs.complete = True
        if (result := xproxy.of_body(data)) is not None:
            obs.xproxy_result = result


class ConverseStream(_BedrockAdapter):
    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        name = event.event
        if name == "contentBlockDelta":
            self._delta(obs, now)
        elif name == "metadata":
            payload = loads(event.data)
            if isinstance(payload, dict):
                if isinstance(payload.get("usage"), dict):
                    obs.usage = payload["usage"]
                    obs.complete = True
                self._proxy_result(obs, event.data, payload)
        elif name and name.startswith("error:"):
            _error(obs, event)
        return True


class Invoke(Converse):
    def read_headers(self, obs: Observation, headers: Any) -> None:
        super().read_headers(obs, headers)
        if obs.usage is None and (usage := usage_from_headers(headers)) is not None:
            obs.usage = usage
            obs.complete = True

    def read_json(self, obs: Observation, data: Any) -> None:
        if not isinstance(data, dict):
            return
        usage = invoke_usage(data)
        if usage is not None:  # the body's counts carry the cache-write split the headers lack
            obs.usage = usage
            obs.complete = True
        obs.model = obs.model or (data.get("model") if isinstance(data.get("model"), str) else None)
        if (result := xproxy.of_body(data)) is not None:
            obs.xproxy_result = result


class InvokeStream(_BedrockAdapter):
    """Chunks of model-native JSON, base64 in ``chunk.bytes``; the last has the invocation metrics.

    An Anthropic model's chunks are Messages events, read by the Anthropic reader (their usage
    has the cache-write split the metrics lack); other families are counted by the metrics.
    """

    def __init__(self) -> None:
        self._messages = AnthropicMessages()

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        name = event.event
        if name and name.startswith("error:"):
            _error(obs, event)
            return True
        if name != "chunk":
            return True
        wrapper = loads(event.data)
        encoded = wrapper.get("bytes") if isinstance(wrapper, dict) else None
        if not isinstance(encoded, str):
            return True
        inner = base64.b64decode(encoded)
        if b'"content_block_delta"' in inner:
            return self._messages.read_event(obs, SSEEvent(event.raw, "content_block_delta", ""), hiding, now)
        if not any(mark in inner for mark in (b"usage", _METRICS.encode(), b"xproxy_result", b'"message_start"')):
            self._delta(obs, now)  # a content chunk of another family: nothing to read in it
            return True
        chunk = loads(inner)
        if not isinstance(chunk, dict):
            return True
        kind = chunk.get("type")
        if isinstance(kind, str) and kind.startswith("message_"):
            complete, obs.complete = obs.complete, False
            self._messages.read_event(obs, SSEEvent(event.raw, kind, inner.decode("utf-8", "replace")), hiding, now)
            obs.complete = complete  # the stream is complete at its metrics, not at message_delta
        metrics = usage_from_metrics(chunk.get(_METRICS))
        if metrics:
            if obs.usage is None or "output_tokens" not in obs.usage:
                obs.usage = metrics
            obs.complete = True
        if (result := xproxy.of_body(chunk)) is not None:
            obs.xproxy_result = result
        return True


class MantleMessages(AnthropicMessages):
    """``AnthropicBedrockMantle``: the Messages format on a Bedrock host, billed as Bedrock."""

    wire = "bedrock"


class MantleChat(OpenAIChat):
    wire = "bedrock"


class MantleResponses(OpenAIResponses):
    wire = "bedrock"


MODEL_OPERATIONS = ("converse", "converse-stream", "invoke", "invoke-with-response-stream")
_MODEL = "/model/{model}/"

PROVIDER = Provider(
    name="bedrock",
    category="system.aws.bedrock",
    bases=(
        "https://bedrock-runtime.*.amazonaws.com",
        "https://bedrock-runtime-fips.*.amazonaws.com",
        "https://bedrock-mantle.*.api.aws",
    ),
    endpoints=(
        Endpoint(_MODEL + "converse", "converse", Converse),
        Endpoint(_MODEL + "converse-stream", "converse-stream", ConverseStream, stream=True),
        Endpoint(_MODEL + "invoke", "invoke", Invoke),
        Endpoint(_MODEL + "invoke-with-response-stream", "invoke-with-response-stream", InvokeStream, stream=True),
        # other wire formats on Bedrock hosts (Mantle, the OpenAI-compatible paths): no Pay-i proxy route
        Endpoint("/anthropic/v1/messages", "messages", MantleMessages, proxy=False),
        Endpoint("/openai/v1/chat/completions", "chat", MantleChat, proxy=False),
        Endpoint("/openai/v1/responses", "responses", MantleResponses, proxy=False),
        Endpoint("/v1/chat/completions", "chat", MantleChat, proxy=False),
        Endpoint("/v1/responses", "responses", MantleResponses, proxy=False),
    ),
    proxy_prefix="/api/v1/proxy/aws.bedrock",
)


def partial_usage(usage: dict[str, Any] | None, deltas: int) -> dict[str, Any] | None:
    """A cut stream's usage: what arrived, with at least one output token per content event."""
    if usage and "output_tokens" in usage:
        return {
            **usage,
            "output_tokens": max(int(usage.get("output_tokens") or 0), deltas),
        }
    if usage and "prompt_tokens" in usage:
        return usage
    merged = dict(usage or {"inputTokens": 0})
    merged["outputTokens"] = max(int(merged.get("outputTokens") or 0), deltas)
    return merged if deltas or usage else None
