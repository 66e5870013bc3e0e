"""What the cloud-hosted routes add to the OpenAI and Anthropic ones: Azure deployments, Claude on Vertex.

Azure OpenAI names a *deployment* where OpenAI names a model; the reply names the model the
deployment serves. A deployment named like a model (``gpt-4o-mini``, ``o3``,
``text-embedding-3-small``) serves that model; any other name serves ``DEFAULT_CHAT_MODEL``
(``DEFAULT_EMBEDDING_MODEL`` on the embeddings route). Claude on Vertex takes the model from
the path and requires an ``anthropic_version`` in the body instead of ``model``.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from . import anthropic_messages
from .call import Call
from .errors import ApiError, require_credential

DEFAULT_CHAT_MODEL = "gpt-4o-mini-2024-07-18"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
MODEL_PREFIXES = ("gpt-", "o1", "o3", "o4", "text-embedding-")
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def azure_authenticate(headers: Mapping[str, str]) -> None:
    """Azure takes ``api-key`` or an Entra/v1 bearer token; any non-empty value will do here."""
    require_credential(
        headers,
        ("api-key",),
        "Access denied due to missing subscription key. Send an 'api-key' header or 'Authorization: Bearer' "
        "(any non-empty value works with the emulator).",
        code="401",
    )


def azure_model(deployment: str, embeddings: bool = False) -> str:
    """The model a deployment serves (see the module docstring)."""
    if deployment.lower().startswith(MODEL_PREFIXES):
        return deployment
    return DEFAULT_EMBEDDING_MODEL if embeddings else DEFAULT_CHAT_MODEL


def vertex_claude(call: Call) -> Response:
    """``:rawPredict`` / ``:streamRawPredict``: a Messages body without ``model``."""
    version = call.body.pop("anthropic_version", None)
    if not isinstance(version, str) or not version:
        raise ApiError(400, f"anthropic_version: required on Vertex AI (e.g. {VERTEX_ANTHROPIC_VERSION!r}).")
    if "model" in call.body:
        raise ApiError(400, "model: not allowed in the body on Vertex AI; the model is in the URL.")
    return anthropic_messages.handle(call)
