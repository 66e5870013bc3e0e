"""What the OpenAI routes share: reasoning models, content parts, auth and usage objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import ApiError
from .prompt import PromptBuilder
from .reply import DEFAULT_EFFORT, EFFORT_UNITS
from .validation import Checker, FieldPath

CHECK = Checker("openai")
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
SYSTEM_FINGERPRINT = "fp_emulator"

CHAT_TEXT_PARTS = {"text": "text", "refusal": "refusal"}
CHAT_ATTACHMENT_PARTS = frozenset({"image_url", "input_audio", "file"})
RESPONSES_TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal", "summary_text": "text"}
RESPONSES_ATTACHMENT_PARTS = frozenset({"input_image", "input_file", "input_audio"})


def authenticate(headers: Mapping[str, str]) -> None:
    """OpenAI wants ``Authorization: Bearer <key>``; any non-empty key will do here."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "You didn't provide an API key. Send 'Authorization: Bearer <key>' (any non-empty key works "
            "with the emulator).",
            code="invalid_api_key",
        )


def is_reasoning_model(model: str) -> bool:
    """o1/o3/o4/gpt-5 families reason (``gpt-5-chat-*`` does not), as in the real API."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(REASONING_PREFIXES) and "-chat" not in name


def reasoning_effort(model: str, effort: Any, path: FieldPath) -> str | None:
    """The effort a reasoning model will use, or None for a model that does not reason."""
    CHECK.one_of(path, effort, EFFORT_UNITS)
    if not is_reasoning_model(model):
        return None
    return effort or DEFAULT_EFFORT


def render_parts(
    builder: PromptBuilder,
    parts: list[Any],
    path: FieldPath,
    text_parts: Mapping[str, str],
    attachment_parts: frozenset[str],
) -> None:
    """Text parts add their text; images, audio and files add a flat attachment cost."""
    for index, part in enumerate(CHECK.objects(path, parts)):
        kind = CHECK.field(part, (*path, index, "type"), "string", required=True)
        if kind in text_parts:
            builder.text(CHECK.field(part, (*path, index, text_parts[kind]), "string", required=True))
        elif kind in attachment_parts:
            builder.attachment(json.dumps(part, sort_keys=True))
        else:
            CHECK.one_of((*path, index, "type"), kind, [*text_parts, *sorted(attachment_parts)])


def chat_usage(prompt: int, cached: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(prompt: int, cached: int, output: int, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }
