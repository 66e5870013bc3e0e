"""Bedrock's URL shapes: which hosts and paths are Bedrock API calls, and their proxy route.

Kept apart from the adapters (``bedrock.py``) so the route table can use it without them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

PROVIDER = "bedrock"
CATEGORY = "system.aws.bedrock"
PROXY_PREFIX = "/api/v1/proxy/aws.bedrock"
MODEL_OPERATIONS = (
    "converse",
    "converse-stream",
    "invoke",
    "invoke-with-response-stream",
)
# Bedrock hosts speaking other wire formats (Mantle, the OpenAI-compatible runtime paths).
FORMAT_PATHS = {
    "/anthropic/v1/messages": "messages",
    "/openai/v1/chat/completions": "chat",
    "/openai/v1/responses": "responses",
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
}
_HOST = re.compile(r"(bedrock-runtime(-fips)?\.[a-z0-9-]+\.amazonaws\.com|bedrock-mantle\.[a-z0-9-]+\.api\.aws)")


def is_bedrock_host(host: str) -> bool:
    return _HOST.fullmatch(host.lower()) is not None


def operation(path: str) -> tuple[str, str | None] | None:
    """``(operation, model id as given)`` for a Bedrock API path (after any base prefix), else None."""
    if path.startswith("/model/"):
        model, _, op = path[7:].rpartition("/")
        if op in MODEL_OPERATIONS and model:
            return op, unquote(model)
        return None
    other = FORMAT_PATHS.get(path)
    return (other, None) if other else None


def proxy_path(path: str, base_path: str) -> str:
    """The proxy route for a Bedrock request path (the model id stays encoded as it was signed)."""
    return PROXY_PREFIX + path[len(base_path.rstrip("/")) :]
