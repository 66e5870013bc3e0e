"""Gemini's ``generateContent`` / ``streamGenerateContent`` / embeddings, for the Gemini API and Vertex.

The prompt is the tools (compact JSON), ``systemInstruction``, then each content framed by
its role; non-text parts cost a flat attachment each. Usage is ``usageMetadata`` as the wire
carries it (camelCase): implicit caching follows the OpenAI routes' rules (1024-token
prefixes seen before), thinking models (2.5 and later, unless ``thinkingBudget`` is 0)
report ``thoughtsTokenCount``, and a built-in tool (``googleSearch``, ``codeExecution``,
``urlContext``) adds ``toolUsePromptTokenCount``. With ``functionDeclarations`` the model calls
each declared function once, one per round, before it answers (google-genai's automatic
function calling then makes one HTTP round per call). A stream sends each chunk with the
running usage total; ``hops=N`` splits it into N continuation hops (``finishReason:
"CONTINUATION"`` with a ``continuationToken`` the SDK sends back).
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Iterator
from typing import Any

from starlette.responses import Response

from . import ids
from .call import Call
from .delivery import dumps, event_stream, json_response
from .errors import ApiError, require_credential
from .prompt import Prompt, PromptBuilder
from .reply import Reply, plan_reply, reasoning_tokens
from .text import count_tokens
from .validation import Checker

CHECK = Checker("anthropic")  # dotted field names, as Google's errors spell them
ROLES = ("user", "model", "function")
BUILTIN_TOOLS = ("googleSearch", "google_search", "codeExecution", "code_execution", "urlContext", "url_context")
TOOL_USE_BASE = 120
PIECES_PER_CHUNK = 8
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip
_ARG_VALUES = {"string": "emulator", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}


def authenticate(headers: dict[str, str]) -> None:
    """``x-goog-api-key`` (Gemini API, Vertex express) or a bearer token (Vertex); any non-empty value."""
    require_credential(
        headers, ("x-goog-api-key",), "Send x-goog-api-key or Authorization: Bearer (any non-empty value works with the emulator)."
    )


def google_error(error: ApiError, request_id: str) -> Response:
    """``{"error": {"code", "message", "status"}}``, as google-genai's ``APIError`` reads it."""
    status = _STATUS.get(error.status) or ("INTERNAL" if error.status >= 500 else "FAILED_PRECONDITION")
    body = {"error": {"code": error.status, "message": error.message, "status": status}}
    headers = {**error.headers, "x-request-id": request_id}
    return Response(dumps(body), status_code=error.status, headers=headers, media_type="application/json")


def request_id() -> str:
    return ids.hex_id("", 32)


def render_prompt(body: dict[str, Any]) -> Prompt:
    builder = PromptBuilder()
    tools = CHECK.field(body, ("tools",), "array") or []
    for tool in CHECK.objects(("tools",), tools):
        builder.json(tool)
        builder.end_block()
    system = CHECK.field(body, ("systemInstruction",), "object")
    if system:
        builder.open("system")
        _parts(builder, system.get("parts") or [], ("systemInstruction", "parts"))
        builder.close()
    contents = CHECK.field(body, ("contents",), "array", required=True)
    CHECK.non_empty(("contents",), contents)
    for index, content in enumerate(CHECK.objects(("contents",), contents)):
        role = CHECK.field(content, ("contents", index, "role"), "string") or "user"
        CHECK.one_of(("contents", index, "role"), role, ROLES)
        builder.open(role)
        _parts(
            builder,
            CHECK.field(content, ("contents", index, "parts"), "array", required=True),
            ("contents", index, "parts"),
        )
        builder.close()
        builder.end_block()
    return builder.build()


def _parts(builder: PromptBuilder, parts: list[Any], path: tuple[Any, ...]) -> None:
    for part in CHECK.objects(path, parts):
        if isinstance(part.get("text"), str):
            builder.text(part["text"])
        elif "functionCall" in part or "functionResponse" in part:
            builder.json(part)
        else:
            builder.attachment(dumps(part))


def _declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            found += [d for d in tool.get("functionDeclarations") or () if isinstance(d, dict) and d.get("name")]
    return found


def _answered(body: dict[str, Any]) -> int:
    """Function responses the conversation already holds."""
    return sum(
        1
        for content in body.get("contents") or ()
        if isinstance(content, dict)
        for part in content.get("parts") or ()
        if isinstance(part, dict) and "functionResponse" in part
    )


def _arguments(declaration: dict[str, Any]) -> dict[str, Any]:
    """A plausible value for each required parameter, by its declared type."""
    schema = declaration.get("parameters") or declaration.get("parametersJsonSchema") or {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    args = {}
    for name in required:
        kind = str((properties.get(name) or {}).get("type") or "string").lower()
        args[name] = _ARG_VALUES.get(kind, "emulator")
    return args


def _thinks(model: str, body: dict[str, Any]) -> bool:
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    if config.get("thinkingBudget") == 0:
        return False
    name = model.rsplit("/", 1)[-1]
    return "2.5" in name or name.startswith("gemini-3") or bool(config)


def _tool_use_tokens(body: dict[str, Any], seed: int) -> int:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    return TOOL_USE_BASE + seed % 50 if any(name in t for t in tools for name in BUILTIN_TOOLS) else 0


def _token(hop: int, seed: int) -> str:
    return base64.b64encode(f"hop:{hop}:{seed}".encode()).decode()


def _resumed_hop(body: dict[str, Any]) -> int:
    token = body.get("continuationToken")
    if not isinstance(token, str):
        return 0
    try:
        kind, hop, _ = base64.b64decode(token).decode().split(":")
    except ValueError:
        raise CHECK.invalid(("continuationToken",), "is not a token this emulator issued") from None
    return int(hop) if kind == "hop" else 0


class _Turn:
    """One reply: text or a function call, with its usage."""

    def __init__(self, call: Call, vertex: bool) -> None:
        body = call.body
        self.call = call
        self.vertex = vertex
        prompt = render_prompt(body)
        seed = prompt.seed(call.model)
        config = CHECK.field(body, ("generationConfig",), "object") or {}
        cap = config.get("maxOutputTokens") if isinstance(config.get("maxOutputTokens"), int) else None
        thoughts = reasoning_tokens(seed) if _thinks(call.model, body) else 0
        self.reply: Reply = plan_reply(seed, cap=cap, reasoning=thoughts, length=call.faults.reply)
        self.prompt_tokens = len(prompt)
        self.cached = call.cache.openai_cached_tokens(prompt, call.model)
        self.tool_use = _tool_use_tokens(body, seed)
        declarations = _declarations(body)
        answered = _answered(body)
        self.function = declarations[answered] if answered < len(declarations) else None
        self.seed = seed
        self.response_id = ids.base62(22)
        self.hops = max(call.faults.hops or 1, 1)
        self.hop = _resumed_hop(body)

    def usage(self, candidates: int, thoughts: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": candidates,
            "totalTokenCount": self.prompt_tokens + candidates + thoughts + self.tool_use,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if candidates:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": candidates}]
        if self.cached:
            usage["cachedContentTokenCount"] = self.cached
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if self.tool_use:
            usage["toolUsePromptTokenCount"] = self.tool_use
            usage["toolUsePromptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.tool_use}]
        if self.vertex:
            usage["trafficType"] = "ON_DEMAND"
        return usage

    def envelope(self, parts: list[dict[str, Any]], finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body: dict[str, Any] = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.call.model}
        body["responseId"] = self.response_id
        if self.vertex:
            body["createTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self.call.created))
        return body

    def _call_part(self) -> dict[str, Any]:
        assert self.function is not None
        return {"functionCall": {"name": self.function["name"], "args": _arguments(self.function)}}

    def _finish(self) -> str:
        return "MAX_TOKENS" if self.reply.truncated else "STOP"

    def body(self) -> dict[str, Any]:
        if self.function is not None:
            part = self._call_part()
            tokens = count_tokens(dumps(part))
            return self.envelope([part], "STOP", self.usage(tokens, self.reply.reasoning))
        return self.envelope(
            [{"text": self.reply.text}], self._finish(), self.usage(len(self.reply.pieces), self.reply.reasoning)
        )

    def events(self) -> Iterator[bytes]:
        """This hop's chunks: its share of the pieces, the running usage on each."""
        if self.function is not None:
            yield _event(self.body())
            return
        pieces = self.reply.pieces
        per_hop = math.ceil(len(pieces) / self.hops) if pieces else 0
        mine = pieces[self.hop * per_hop : (self.hop + 1) * per_hop]
        last_hop = self.hop >= self.hops - 1
        thoughts = self.reply.reasoning if self.hop == 0 else 0
        sent = 0
        for start in range(0, max(len(mine), 1), PIECES_PER_CHUNK):
            chunk = mine[start : start + PIECES_PER_CHUNK]
            sent += len(chunk)
            final = start + PIECES_PER_CHUNK >= len(mine)
            finish = (self._finish() if last_hop else "CONTINUATION") if final else None
            body = self.envelope([{"text": "".join(chunk)}], finish, self.usage(sent, thoughts))
            if final and not last_hop:
                body["candidates"][0]["continuationToken"] = _token(self.hop + 1, self.seed)
            yield _event(body)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload).encode() + b"\r\n\r\n"


def generate(call: Call, vertex: bool, stream: bool) -> Response:
    turn = _Turn(call, vertex)
    if stream:
        return event_stream(turn.events(), call.faults, {})
    return json_response(turn.body(), call.faults, {})


def _vector(text: str, dimensions: int) -> list[float]:
    raw = hashlib.shake_256(text.encode()).digest(dimensions * 4)
    values = [int.from_bytes(raw[i : i + 4], "big") / 2**32 - 0.5 for i in range(0, len(raw), 4)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _texts(content: Any, path: tuple[Any, ...]) -> str:
    parts = CHECK.field(content, (*path, "parts"), "array", required=True) if isinstance(content, dict) else []
    return " ".join(p.get("text", "") for p in parts if isinstance(p, dict))


def embed(call: Call, action: str) -> Response:
    """``embedContent`` / ``batchEmbedContents`` (usage in ``usageMetadata``) or Vertex ``predict`` (per-instance statistics)."""
    body = call.body
    dimensions = 768
    if action == "predict":
        instances = CHECK.field(body, ("instances",), "array", required=True)
        predictions = []
        for instance in CHECK.objects(("instances",), instances):
            text = str(instance.get("content") or "")
            stats = {"token_count": count_tokens(text), "truncated": False}
            predictions.append({"embeddings": {"values": _vector(text, dimensions), "statistics": stats}})
        return json_response({"predictions": predictions, "metadata": {"billableCharacterCount": 0}}, call.faults, {})
    if action == "batchEmbedContents":
        requests = CHECK.field(body, ("requests",), "array", required=True)
        texts = [
            _texts(r.get("content"), ("requests", i, "content"))
            for i, r in enumerate(CHECK.objects(("requests",), requests))
        ]
    else:
        texts = [_texts(CHECK.field(body, ("content",), "object", required=True), ("content",))]
    tokens = sum(count_tokens(t) for t in texts)
    usage = {"promptTokenCount": tokens, "totalTokenCount": tokens}
    embeddings = [{"values": _vector(t, dimensions)} for t in texts]
    reply: dict[str, Any] = (
        {"embeddings": embeddings} if action == "batchEmbedContents" else {"embedding": embeddings[0]}
    )
    reply["usageMetadata"] = usage
    return json_response(reply, call.faults, {})


def handle(call: Call, action: str, vertex: bool) -> Response:
    """One model action (the part after ``:`` in the path)."""
    if action in ("generateContent", "streamGenerateContent"):
        return generate(call, vertex, stream=action == "streamGenerateContent")
    if action in ("embedContent", "batchEmbedContents") or (vertex and action == "predict"):
        return embed(call, action)
    raise ApiError(
        404,
        f"the emulator does not serve :{action} (it serves generateContent, streamGenerateContent, embedContent, batchEmbedContents{', predict' if vertex else ''}).",
    )
