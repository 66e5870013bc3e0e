"""Vertex AI: Gemini through google-genai (``vertexai=True``) and Claude through ``anthropic.AnthropicVertex``.

Regional hosts ``{location}-aiplatform.googleapis.com``, ``aiplatform.googleapis.com`` (global
and express mode) and ``aiplatform.{location}.rep.googleapis.com``. Publisher ``google`` speaks
the Gemini format (``gemini.py``); publisher ``anthropic`` takes Messages bodies at
``:rawPredict`` / ``:streamRawPredict``, model in the path. Pay-i proxies the project routes
its spec lists (``/api/v1/proxy/google.vertex/…``), not express mode or embeddings.
"""

from __future__ import annotations

from .anthropic import AnthropicMessages
from .base import Endpoint, Provider
from .gemini import GeminiEmbed, GeminiGenerate


class VertexClaude(AnthropicMessages):
    resource_prefix = "anthropic."  # as Pay-i's SDK names Claude on Vertex


PROJECT = "/{version}/projects/{project}/locations/{location}/publishers/"
GEMINI = PROJECT + "google/models/{model}"
CLAUDE = PROJECT + "anthropic/models/{model}"
EXPRESS = "/{version}/publishers/google/models/{model}"

PROVIDER = Provider(
    name="vertex",
    category="system.google.vertex",
    bases=(
        "https://aiplatform.googleapis.com",
        "https://*-aiplatform.googleapis.com",
        "https://aiplatform.*.rep.googleapis.com",
    ),
    endpoints=(
        Endpoint(GEMINI + ":generateContent", "generate", GeminiGenerate),
        Endpoint(GEMINI + ":streamGenerateContent", "generate", GeminiGenerate, stream=True),
        Endpoint(CLAUDE + ":rawPredict", "messages", VertexClaude),
        Endpoint(CLAUDE + ":streamRawPredict", "messages", VertexClaude),
        Endpoint(GEMINI + ":embedContent", "embeddings", GeminiEmbed, proxy=False),
        Endpoint(GEMINI + ":predict", "embeddings", GeminiEmbed, proxy=False),
        Endpoint(EXPRESS + ":generateContent", "generate", GeminiGenerate, proxy=False),
        Endpoint(EXPRESS + ":streamGenerateContent", "generate", GeminiGenerate, proxy=False, stream=True),
        Endpoint(EXPRESS + ":embedContent", "embeddings", GeminiEmbed, proxy=False),
    ),
    proxy_prefix="/api/v1/proxy/google.vertex",
    version_in_base=True,
)
