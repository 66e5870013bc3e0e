"""Which headers never leave: the one rule set for what capture records and what is sent to Pay-i.

A header is dropped when it may carry a credential (by exact name, or a telling word such as
``key`` or ``token`` in its name) or is framing (``content-*``, ``transfer-encoding``,
``connection``, ``keep-alive``). Capture applies it when a response is recorded and the wire
format applies it again when ``provider_response_headers`` are sent, so a journal written by
an older version cannot leak what today's rules drop.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
        "xproxy-api-key",
    }
)
_SECRET_WORDS = ("auth", "key", "token", "secret", "cookie", "password", "credential")
_SKIPPED = frozenset({"transfer-encoding", "connection", "keep-alive"})


def is_secret(name: str) -> bool:
    """Whether a header may carry a credential (by exact name or by a telling word in it)."""
    lowered = name.lower()
    if lowered.endswith("-token-count"):  # Bedrock's usage counts (x-amzn-bedrock-input-token-count)
        return False
    return lowered in SECRET_HEADERS or any(word in lowered for word in _SECRET_WORDS)


@lru_cache(maxsize=512)
def kept(name: str) -> bool:
    """Whether a response header may be recorded and forwarded (neither a credential nor framing)."""
    lowered = name.lower()
    return not is_secret(lowered) and lowered not in _SKIPPED and not lowered.startswith("content-")


def response_headers(headers: Iterable[tuple[str, str]] | Any) -> list[dict[str, str]]:
    """Provider response headers worth keeping (request ids, rate limits), minus secrets and framing."""
    if hasattr(headers, "multi_items"):  # httpx
        items = headers.multi_items()
    else:  # botocore's HeadersDict, or pairs read back from the journal
        items = headers.items() if hasattr(headers, "items") else headers
    return [{"name": name, "value": value} for name, value in items if kept(name)]
