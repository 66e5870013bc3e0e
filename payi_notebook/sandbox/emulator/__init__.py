"""A local stand-in for the provider APIs, for the official SDKs to run offline.

``create_app()`` returns a Starlette app speaking OpenAI (``/v1/...``), Anthropic
(``/v1/messages``), Azure OpenAI (``/openai/...``), Azure Foundry (``/anthropic/v1/messages``),
the Gemini API (``/{version}/models/{model}:...``) and Vertex AI (``/{version}/projects/...``)
with deterministic replies, plausible usage (cached, reasoning and tool-use tokens included)
and faults injected per request. See README.md.
"""

from .app import create_app
from .faults import FAULT_HEADER
from .request_log import RequestLog, RequestRecord
from .text import count_tokens, tokenize

# Where each provider's SDK is pointed at the emulator: the URL as the user gives it to the SDK
# (``OpenAI(base_url=)``, ``Anthropic(base_url=)``, ``AzureOpenAI(azure_endpoint=)``,
# ``AnthropicFoundry(base_url=)``, ``genai.Client(http_options=HttpOptions(base_url=))`` for the
# Gemini API and Vertex, ``boto3.client(endpoint_url=)`` and ``AnthropicBedrock(base_url=)``; Bedrock's
# OpenAI- and Anthropic-format clients take ``<url>/bedrock/openai/v1`` and ``<url>/bedrock/anthropic``);
# the paths under it tell the providers apart.
SDK_BASE_SUFFIX = {
    "openai": "/v1",
    "anthropic": "",
    "azure_openai": "",
    "azure_anthropic": "/anthropic",
    "google": "",
    "vertex": "",
    "bedrock": "",
}
EXTRA_BASE_SUFFIX = {"bedrock": "/bedrock"}  # the Mantle / OpenAI-format endpoints (``app.BEDROCK_FORMATS``)


def sdk_base_urls(provider_url: str) -> list[tuple[str, str]]:
    """The emulator's base URLs, as ``(provider, url)`` pairs, as each SDK takes them."""
    url = provider_url.rstrip("/")
    pairs = [(provider, url + suffix) for provider, suffix in SDK_BASE_SUFFIX.items()]
    return pairs + [(provider, url + suffix) for provider, suffix in EXTRA_BASE_SUFFIX.items()]


__all__ = [
    "FAULT_HEADER",
    "SDK_BASE_SUFFIX",
    "RequestLog",
    "RequestRecord",
    "count_tokens",
    "create_app",
    "sdk_base_urls",
    "tokenize",
]
