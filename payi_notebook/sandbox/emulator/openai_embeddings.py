"""``POST /v1/embeddings``: deterministic unit vectors, as floats or base64 float32.

Each vector comes from SHAKE-256 of its input text, so the same text always embeds the
same way and ``dimensions=d`` is the first ``d`` components renormalised, which is how
OpenAI's shortened embeddings behave. Usage is the tokens of all inputs, no framing.
"""

from __future__ import annotations

import base64
import hashlib
import math
from array import array
from typing import Any

from starlette.responses import Response

from .call import Call
from .delivery import json_response
from .errors import ApiError
from .openai_common import CHECK
from .text import count_tokens

LARGE_DIMENSIONS = 3072
DEFAULT_DIMENSIONS = 1536
MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")
_UINT32 = float(1 << 32)


def native_dimensions(model: str) -> int:
    return LARGE_DIMENSIONS if "large" in model else DEFAULT_DIMENSIONS


def _inputs(body: dict[str, Any]) -> tuple[list[str], int]:
    """The texts to embed (token arrays as their joined ids) and their token count."""
    value = CHECK.field(body, ("input",), ("string", "array"), required=True)
    items = [value] if isinstance(value, str) else value
    CHECK.non_empty(("input",), items)
    if len(items) > MAX_INPUTS:
        raise CHECK.invalid(("input",), f"at most {MAX_INPUTS} inputs per request.")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        items = [items]
    texts = []
    tokens = 0
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise CHECK.invalid(("input", index), "'' is empty; every input must contain text.")
            texts.append(item)
            tokens += count_tokens(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            texts.append(" ".join(map(str, item)))
            tokens += len(item)
        else:
            raise CHECK.invalid(
                ("input", index), "expected a non-empty string or a non-empty array of token ids."
            )
    return texts, tokens


def embed(text: str, dimensions: int) -> array:
    """A float32 unit vector for ``text``; shorter ones are prefixes of longer, renormalised."""
    raw = array("I", hashlib.shake_256(text.encode()).digest(4 * dimensions))
    values = [value / _UINT32 - 0.5 for value in raw]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return array("f", [value / norm for value in values])


def handle(call: Call) -> Response:
    body = call.body
    texts, tokens = _inputs(body)
    native = native_dimensions(call.model)
    dimensions = CHECK.field(body, ("dimensions",), "integer")
    if dimensions is not None:
        if call.model.startswith("text-embedding-ada"):
            raise ApiError(400, "This model does not support specifying dimensions.", param="dimensions")
        CHECK.at_least(("dimensions",), dimensions, 1)
        if dimensions > native:
            raise CHECK.invalid(("dimensions",), f"{dimensions} is more than this model's {native}.")
    encoding = CHECK.field(body, ("encoding_format",), "string") or "float"
    CHECK.one_of(("encoding_format",), encoding, ENCODINGS)
    data = []
    for index, text in enumerate(texts):
        vector = embed(text, dimensions or native)
        encoded: Any = base64.b64encode(vector.tobytes()).decode() if encoding == "base64" else vector.tolist()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    result = {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json_response(result, call.faults, {})
