"""Google's Gemini API (``generativelanguage.googleapis.com``) as google-genai calls it.

``/{version}/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse`` (each event a
``GenerateContentResponse`` whose ``usageMetadata`` is the running total, so the last one
counts), ``:embedContent`` / ``:batchEmbedContents``. Usage is raw camelCase JSON
(``units.google_units``). Every HTTP round is its own call: automatic function calling and
stream continuation hops each bill separately. Pay-i has no proxy route for the Gemini API.
"""

from __future__ import annotations

from typing import Any

from .. import xproxy
from .base import ApiAdapter, Endpoint, Observation, Provider, loads, read_error
from .sse import SSEEvent


class GeminiGenerate(ApiAdapter):
    wire = "google"
    resource_prefix = "google."
    response_model = True  # the response's modelVersion, as Pay-i's SDK does

    def read_json(self, obs: Observation, data: Any) -> None:
        if not isinstance(data, dict):
            return
        _take(obs, data)
        obs.complete = obs.usage is not None

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        data = event.data
        if not data:
            return True
        if '"candidates"' in data:
            obs.deltas += 1
        if '"usageMetadata"' in data or "xproxy_result" in data:
            obs.last = data
        elif data.startswith('{"error"') or '"error":' in data[:20]:
            read_error(obs, loads(data))
        if '"finishReason"' in data:
            obs.complete = True
        return True

    def settle(self, obs: Observation) -> None:
        last, obs.last = obs.last, None
        chunk = loads(last) if last else None
        if isinstance(chunk, dict):
            _take(obs, chunk)


class GeminiEmbed(ApiAdapter):
    """Embeddings report ``usageMetadata`` (Gemini API) or per-embedding ``statistics`` (Vertex ``:predict``)."""

    wire = "google"
    resource_prefix = "google."

    def read_json(self, obs: Observation, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if (result := xproxy.of_body(data)) is not None:
            obs.xproxy_result = result
        usage = data.get("usageMetadata")
        if not isinstance(usage, dict):
            items = data.get("embeddings") or [
                p.get("embeddings") for p in data.get("predictions") or () if isinstance(p, dict)
            ]
            counts = [_statistics_tokens(item) for item in items if isinstance(item, dict)]
            usage = {"promptTokenCount": sum(counts)} if any(c is not None for c in counts) else None
        if usage is not None:
            obs.usage = usage
            obs.complete = True


def _statistics_tokens(embedding: dict[str, Any]) -> int:
    stats = embedding.get("statistics") or {}
    count = stats.get("tokenCount", stats.get("token_count"))
    return int(count) if isinstance(count, (int, float)) else 0


def _take(obs: Observation, data: dict[str, Any]) -> None:
    obs.response_id = data.get("responseId") or obs.response_id
    obs.model = data.get("modelVersion") or obs.model
    if isinstance(data.get("usageMetadata"), dict):
        obs.usage = data["usageMetadata"]
    if (result := xproxy.of_body(data)) is not None:
        obs.xproxy_result = result


MODEL = "/{version}/models/{model}"

PROVIDER = Provider(
    name="google",
    category="system.google.vertex",  # what Pay-i's SDK sends for the Gemini API too
    bases=("https://generativelanguage.googleapis.com",),
    endpoints=(
        Endpoint(MODEL + ":generateContent", "generate", GeminiGenerate, proxy=False),
        Endpoint(MODEL + ":streamGenerateContent", "generate", GeminiGenerate, proxy=False, stream=True),
        Endpoint(MODEL + ":embedContent", "embeddings", GeminiEmbed, proxy=False),
        Endpoint(MODEL + ":batchEmbedContents", "embeddings", GeminiEmbed, proxy=False),
    ),
    version_in_base=True,
)
