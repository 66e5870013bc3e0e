"""Claude on Azure AI Foundry: ``anthropic.AnthropicFoundry`` → ``https://<res>.services.ai.azure.com/anthropic``.

The Messages API as Anthropic serves it; Pay-i's proxy route needs ``xProxy-PriceAs-Resource``.
"""

from __future__ import annotations

from .anthropic import AnthropicMessages
from .base import Endpoint, Provider

PROVIDER = Provider(
    name="azure_anthropic",
    category="system.azure",
    bases=("https://*.services.ai.azure.com/anthropic",),
    endpoints=(Endpoint("/v1/messages", "messages", AnthropicMessages),),
    proxy_prefix="/api/v1/proxy/azure.anthropic",
    price_as_resource=True,
)
