"""Server-sent event framing as the OpenAI and Anthropic SDK decoders read it."""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"


def data_event(payload: str) -> bytes:
    """An unnamed event (OpenAI chat chunks)."""
    return b"data: " + payload.encode() + b"\n\n"


def named_event(name: str, payload: str) -> bytes:
    """An event with an ``event:`` line (Responses API, Anthropic)."""
    return b"event: " + name.encode() + b"\ndata: " + payload.encode() + b"\n\n"
