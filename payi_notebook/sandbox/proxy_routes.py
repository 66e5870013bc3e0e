"""The proxy routes the sandbox serves, as Pay-i's spec lists them, and how each one's answer is read.

A route is a spec path (templates included, e.g. ``{deploymentName}``); what follows its
prefix is the provider path, forwarded to ``xProxy-Provider-BaseUri`` (or the emulator).
Each route says which wire format its answer speaks (usage, id and model live in different
places) and which resource it prices: the ``model`` of the request, the model an Azure
deployment answered with, or the Vertex model in the path with Pay-i's vendor prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .sse import (
    ChatTracker,
    GeminiTracker,
    MessagesTracker,
    ResponsesTracker,
    StreamTracker,
)

Resource = Callable[[Mapping[str, str], Mapping[str, Any], Any], Any]  # (path params, body, answered model)


def _requested(params: Mapping[str, str], body: Mapping[str, Any], answered: Any) -> Any:
    return body.get("model") or answered


def _answered(params: Mapping[str, str], body: Mapping[str, Any], answered: Any) -> Any:
    return answered or body.get("model")


def _vertex(prefix: str, prefer_answered: bool) -> Resource:
    def resource(params: Mapping[str, str], body: Mapping[str, Any], answered: Any) -> Any:
        model = (answered or params.get("modelId")) if prefer_answered else params.get("modelId")
        return prefix + model if model else None

    return resource


def read_openai(payload: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(usage, provider response id, model) of an OpenAI or Anthropic JSON answer."""
    return payload.get("usage"), payload.get("id"), payload.get("model")


def read_gemini(payload: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(usage, provider response id, model) of a Gemini ``GenerateContentResponse``."""
    return payload.get("usageMetadata"), payload.get("responseId"), payload.get("modelVersion")


@dataclass(frozen=True)
class ProviderApi:
    """One proxied provider endpoint."""

    prefix: str  # the proxy prefix before the provider path
    category: str
    operation: str
    wire: str  # usage format (units.units_for)
    tracker: Callable[[], StreamTracker]
    read: Callable[[Mapping[str, Any]], tuple[Any, Any, Any]] = read_openai
    resource: Resource = _requested
    stream: bool = False  # the path itself asks for a stream (Vertex :stream*)
    default_suffix: str = ""  # where the provider lives under the emulator's URL when no BaseUri is given


P = "/api/v1/proxy"
OPENAI = P + "/openai"
AZURE_OPENAI = P + "/azure.openai"
AZURE_ANTHROPIC = P + "/azure.anthropic"
VERTEX = P + "/google.vertex"
VERTEX_MODEL = VERTEX + "/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{modelId}"
DEPLOYMENT = AZURE_OPENAI + "/openai/deployments/{deploymentName}"



def _azure(operation: str, tracker: Callable[[], StreamTracker]) -> ProviderApi:
    return ProviderApi(AZURE_OPENAI, "system.azureopenai", operation, "openai", tracker, resource=_answered)


def _gemini(stream: bool) -> ProviderApi:
    resource = _vertex("google.", prefer_answered=True)
    return ProviderApi(VERTEX, "system.google.vertex", "generate", "google", GeminiTracker, read_gemini, resource, stream)


def _claude() -> ProviderApi:
    resource = _vertex("anthropic.", prefer_answered=False)
    return ProviderApi(VERTEX, "system.google.vertex", "messages", "anthropic", MessagesTracker, resource=resource)


APIS: dict[str, ProviderApi] = {
    OPENAI + "/v1/chat/completions": ProviderApi(OPENAI, "system.openai", "chat", "openai", ChatTracker),
    OPENAI + "/v1/responses": ProviderApi(OPENAI, "system.openai", "responses", "openai", ResponsesTracker),
    OPENAI + "/v1/embeddings": ProviderApi(OPENAI, "system.openai", "embeddings", "openai", ChatTracker),
    P + "/anthropic/v1/messages": ProviderApi(
        P + "/anthropic", "system.anthropic", "messages", "anthropic", MessagesTracker
    ),
    DEPLOYMENT + "/chat/completions": _azure("chat", ChatTracker),
    DEPLOYMENT + "/embeddings": _azure("embeddings", ChatTracker),
    AZURE_OPENAI + "/openai/v1/responses": _azure("responses", ResponsesTracker),
    AZURE_ANTHROPIC + "/v1/messages": ProviderApi(
        AZURE_ANTHROPIC, "system.azure", "messages", "anthropic", MessagesTracker, default_suffix="/anthropic"
    ),
    VERTEX_MODEL + ":generateContent": _gemini(stream=False),
    VERTEX_MODEL + ":streamGenerateContent": _gemini(stream=True),
    VERTEX_MODEL + ":rawPredict": _claude(),
    VERTEX_MODEL + ":streamRawPredict": _claude(),
}
