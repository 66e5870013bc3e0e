"""Strict request validation against the vendored Pay-i OpenAPI spec.

The sandbox refuses what Pay-i would refuse: bodies are checked against the spec's component
schemas (every object is ``additionalProperties: false``) with format checks, and declared
header parameters against their types. Each refusal names the offending field so the caller
knows what to fix.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema.exceptions import ValidationError, best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from . import errors

SPEC_URI = "urn:payi:openapi"

INGEST_REQUEST = "PayI.Common.Models.ApiRouter.IngestRequest"
BULK_INGEST_REQUEST = "PayI.Common.Models.ApiRouter.BulkIngestRequest"
CREATE_LIMIT = "PayI.Common.Models.BudgetManagement.CreateLimit"
UPDATE_LIMIT = "PayI.Common.Models.BudgetManagement.UpdateLimit"
PROPERTIES_REQUEST = "PayI.Common.Models.PropertiesRequest"


@cache
def load_spec() -> dict[str, Any]:
    """The vendored spec shipped inside the package."""
    text = resources.files(__package__).joinpath("payi-openapi.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator(component: str) -> OAS30Validator:
    spec = load_spec()
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4))
    return OAS30Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{component}"},
        registry=registry,
        format_checker=oas30_format_checker,
    )


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path)


def _describe(error: ValidationError, where: str, code: str | None) -> errors.PayiError:
    """One-line refusal naming the field, with the code Pay-i uses for that kind of fault."""
    path = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in error.validator_value if name not in instance]
        return errors.bad_request(
            code or errors.REQUIRED_FIELD_MISSING,
            f"{where}{_dotted(path + missing[:1])}: required field is missing",
        )
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = list(error.schema.get("properties", {}))
        extra = sorted(str(name) for name in instance if name not in known)
        close = difflib.get_close_matches(extra[0], known, n=1) if extra else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return errors.bad_request(
            code or errors.REQUEST_PROCESSING_ERROR,
            f"{where}{_dotted(path + extra[:1])}: unknown field, not in the Pay-i spec{hint}",
        )
    field = _dotted(path) or "body"
    return errors.bad_request(code or errors.REQUEST_PROCESSING_ERROR, f"{where}{field}: {error.message}")


def validate_body(component: str, body: Any, where: str = "", code: str | None = None) -> None:
    """Raise a 400 ``PayiError`` naming the first field of ``body`` that violates ``component``.

    ``code`` replaces the generic codes where a route has its own (limit create/update).
    """
    error = best_match(_validator(component).iter_errors(body))
    if error is not None:
        raise _describe(error, where, code)


# No Pay-i body nests anywhere near this deep; past it, parsing and schema checks recurse
# into a RecursionError (a 500) instead of a refusal naming the field.
MAX_DEPTH = 64


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, or a 400 ``invalid_json`` saying where it broke."""
    if not raw.strip():
        raise errors.bad_request(errors.INVALID_JSON, "request body is empty; send a JSON document")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(errors.INVALID_JSON, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise errors.bad_request(errors.INVALID_JSON, _too_deep(_deep_field(raw))) from None
    path = _too_deep_path(value)
    if path is not None:
        raise errors.bad_request(errors.INVALID_JSON, _too_deep(_dotted(path[:4]) + (".…" if len(path) > 4 else "")))
    return value


def _too_deep_path(value: Any) -> list[Any] | None:
    """The path to the first value nested more than ``MAX_DEPTH`` levels deep (None if none is)."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return path
        if isinstance(node, dict):
            stack.extend((child, [*path, key]) for key, child in node.items() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, [*path, i]) for i, child in enumerate(node) if isinstance(child, (dict, list)))
    return None


def _deep_field(raw: bytes) -> str:
    """The top-level field (key, or index of a top-level array) under which ``raw`` nests
    deepest, found by scanning the text: it was too deep to parse."""
    depth = 0
    in_string = escaped = False
    start = 0
    last = ""  # the latest string at depth 1 (a key, when followed by ':')
    index = 0
    for pos, byte in enumerate(raw):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
                if depth == 1:
                    last = raw[start:pos].decode("utf-8", "replace")
        elif byte == 0x22:
            in_string, start = True, pos + 1
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return last if raw.lstrip()[:1] == b"{" else f"[{index}]"
        elif byte in (0x5D, 0x7D):
            depth -= 1
        elif byte == 0x2C and depth == 1:  # a comma between top-level items
            index += 1
    return "body"


def _too_deep(where: str) -> str:
    return f"{where or 'body'}: nested more than {MAX_DEPTH} levels deep; send a flatter value"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Provider SDKs authenticate with whichever of these their version uses (anthropic 2.x sends a
# bearer token, not x-api-key), so any one satisfies a route's required "Provider Authentication".
PROVIDER_CREDENTIALS = ("authorization", "x-api-key", "api-key")
PROVIDER_AUTH = "Provider Authentication"


@cache
def header_params(path: str, method: str) -> tuple[tuple[str, str, bool, str, str], ...]:
    """(lower-case name, spelled name, required, schema type, description) of each declared header."""
    operation = load_spec()["paths"][path][method]
    return tuple(
        (
            p["name"].lower(),
            p["name"],
            bool(p.get("required")),
            p.get("schema", {}).get("type", "string"),
            p.get("description", ""),
        )
        for p in operation.get("parameters", [])
        if p.get("in") == "header"
    )


def check_headers(path: str, method: str, headers: Mapping[str, str]) -> None:
    """Refuse a missing required header or one whose value does not fit its declared type."""
    for lower, name, required, kind, description in header_params(path, method):
        value = headers.get(lower)
        if value is None:
            if not required:
                continue
            if description == PROVIDER_AUTH:
                if any(headers.get(credential) for credential in PROVIDER_CREDENTIALS):
                    continue
                raise errors.bad_request(
                    errors.HEADER_IS_MISSING,
                    f"provider credentials are missing: send the provider's key ({name} header)",
                )
            raise errors.bad_request(errors.HEADER_IS_MISSING, f"header {name} is required on this route")
        if kind == "integer":
            try:
                int(value.strip(), 10)
            except ValueError:
                raise errors.bad_request(
                    errors.REQUEST_PROCESSING_ERROR, f"header {name}: {value!r} is not an integer"
                ) from None
