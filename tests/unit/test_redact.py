"""Which headers never leave: one rule set for what capture records and what the wire format sends."""

from __future__ import annotations

import httpx
import pytest

from payi_notebook import redact, wire
from payi_notebook.events import UsageEvent

CREDENTIALS = [
    "Authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "xProxy-api-key",
    "cookie",
    "Set-Cookie",
    "x-amz-security-token",
    "x-client-secret",
    "x-session-token",
    "x-vendor-password",
    "x-upstream-credential",
]
FRAMING = ["content-type", "Content-Length", "content-encoding", "transfer-encoding", "connection", "keep-alive"]
KEPT = ["x-request-id", "openai-processing-ms", "x-ratelimit-remaining-requests", "x-amzn-bedrock-input-token-count", "retry-after"]


@pytest.mark.parametrize("name", CREDENTIALS)
def test_credential_headers_are_secret_and_never_kept(name: str) -> None:
    assert redact.is_secret(name)
    assert not redact.kept(name)


@pytest.mark.parametrize("name", FRAMING)
def test_framing_headers_are_not_kept(name: str) -> None:
    assert not redact.is_secret(name)
    assert not redact.kept(name)


@pytest.mark.parametrize("name", KEPT)
def test_useful_headers_are_kept(name: str) -> None:
    assert redact.kept(name)


def _headers() -> httpx.Headers:
    return httpx.Headers([(name, f"value-of-{name}") for name in CREDENTIALS + FRAMING + KEPT])


def test_capture_keeps_exactly_the_useful_headers_from_httpx_and_from_pairs() -> None:
    from_httpx = redact.response_headers(_headers())
    from_pairs = redact.response_headers(list(_headers().multi_items()))
    assert from_httpx == from_pairs
    assert [h["name"].lower() for h in from_httpx] == [name.lower() for name in KEPT]


def test_the_wire_drops_what_capture_drops_even_from_an_old_journal() -> None:
    # A record written before today's rules may still hold any header: the wire applies them again.
    recorded = [{"name": name, "value": f"value-of-{name}"} for name in CREDENTIALS + FRAMING + KEPT]
    event = UsageEvent(provider="google", category="system.google.vertex", operation="generate", response_headers=recorded)
    sent = wire.ingest_body(event)["provider_response_headers"]
    assert [h["name"] for h in sent] == KEPT
    assert sent == [{"name": h["name"], "value": h["value"]} for h in redact.response_headers(_headers())]
