"""Azure OpenAI: deployment routes, the Responses route and the v1 GA routes of an Azure resource.

``AzureOpenAI(azure_endpoint=E)`` calls ``E/openai/deployments/{deployment}/…?api-version=``;
a plain ``OpenAI(base_url=E + "/openai/v1/")`` calls ``E/openai/v1/…``. A deployment name
does not price, so the resource is the model the response names; the deployment is kept
apart (the route's ``deployment`` parameter). Pay-i proxies only the paths its spec lists.
"""

from __future__ import annotations

from .base import Endpoint, Provider
from .openai import OpenAIChat, OpenAIEmbeddings, OpenAIResponses


class AzureChat(OpenAIChat):
    response_model = True


class AzureResponses(OpenAIResponses):
    response_model = True


class AzureEmbeddings(OpenAIEmbeddings):
    response_model = True


_DEPLOYMENT = "/openai/deployments/{deployment}"

PROVIDER = Provider(
    name="azure_openai",
    category="system.azureopenai",
    bases=("https://*.openai.azure.com", "https://*.cognitiveservices.azure.com", "https://*.services.ai.azure.com"),
    endpoints=(
        Endpoint(_DEPLOYMENT + "/chat/completions", "chat", AzureChat),
        Endpoint(_DEPLOYMENT + "/embeddings", "embeddings", AzureEmbeddings),
        Endpoint(_DEPLOYMENT + "/responses", "responses", AzureResponses, proxy=False),
        Endpoint("/openai/responses", "responses", AzureResponses, proxy=False),
        Endpoint("/openai/v1/responses", "responses", AzureResponses),
        Endpoint("/openai/v1/chat/completions", "chat", AzureChat, proxy=False),
        Endpoint("/openai/v1/embeddings", "embeddings", AzureEmbeddings, proxy=False),
    ),
    proxy_prefix="/api/v1/proxy/azure.openai",
)
