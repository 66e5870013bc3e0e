"""Request-field checks that fail with a 400 naming the field, worded like each provider.

OpenAI names a field ``messages[0].content`` and says "Missing required parameter"; Anthropic
names it ``messages.0.content`` and says "Field required". The checks are the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .errors import ApiError

Dialect = Literal["openai", "anthropic"]
FieldPath = tuple[str | int, ...]

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
_ARTICLES = {"integer": "an integer", "array": "an array", "object": "an object"}
_MISSING = object()


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for name in ("string", "integer", "number", "array", "object"):
        if isinstance(value, _PYTHON_TYPES[name]):
            return name
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PYTHON_TYPES[kind])


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, or a 400 saying why it is not one."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}); send a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"The request body must be a JSON object, not {json_type(body)}.")
    return body


class Checker:
    """Reads fields of a request body, raising ``ApiError(400)`` in one dialect's words."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def name(self, path: FieldPath) -> str:
        if self.dialect == "anthropic":
            return ".".join(str(part) for part in path)
        text = ""
        for part in path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    def error(self, path: FieldPath, openai_message: str, anthropic_detail: str, code: str) -> ApiError:
        name = self.name(path)
        if self.dialect == "anthropic":
            return ApiError(400, f"{name}: {anthropic_detail}")
        return ApiError(400, openai_message.replace("{name}", name), param=name, code=code)

    def missing(self, path: FieldPath) -> ApiError:
        return self.error(path, "Missing required parameter: '{name}'.", "Field required", "missing_required_parameter")

    def invalid(self, path: FieldPath, detail: str) -> ApiError:
        return self.error(path, "Invalid value for '{name}': " + detail, detail, "invalid_value")

    def field(
        self, obj: Mapping[str, Any], path: FieldPath, kinds: str | tuple[str, ...], *, required: bool = False
    ) -> Any:
        """``obj[path[-1]]`` checked against JSON type(s) ``kinds``; None when absent or null."""
        value = obj.get(path[-1], _MISSING) if isinstance(path[-1], str) else _MISSING
        if value is _MISSING or value is None:
            if required:
                raise self.missing(path)
            return None
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        if not any(_is(value, kind) for kind in kinds):
            expected = " or ".join(_ARTICLES.get(kind, f"a {kind}") for kind in kinds)
            raise self.error(
                path,
                f"Invalid type for '{{name}}': expected {expected}, but got {json_type(value)} instead.",
                f"Input should be {expected}",
                "invalid_type",
            )
        return value

    def at_least(self, path: FieldPath, value: int | None, minimum: int) -> None:
        if value is not None and value < minimum:
            raise self.error(
                path,
                f"Invalid '{{name}}': integer below minimum value. "
                f"Expected a value >= {minimum}, but got {value} instead.",
                f"Input should be greater than or equal to {minimum}",
                "integer_below_min_value",
            )

    def one_of(self, path: FieldPath, value: Any, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if value is not None and value not in allowed:
            listed = ", ".join(f"'{item}'" for item in allowed)
            raise self.error(
                path,
                f"Invalid value for '{{name}}': {value!r}. Supported values are: {listed}.",
                f"Input should be one of {listed}",
                "invalid_value",
            )

    def non_empty(self, path: FieldPath, value: list[Any] | None) -> None:
        if value is not None and not value:
            raise self.error(
                path,
                "Invalid '{name}': empty array. "
                "Expected an array with minimum length 1, but got an empty array instead.",
                "List should have at least 1 item, not 0",
                "empty_array",
            )

    def objects(self, path: FieldPath, items: list[Any]) -> list[dict[str, Any]]:
        """Every element of an array checked to be a JSON object."""
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(
                    (*path, index),
                    f"Invalid type for '{{name}}': expected an object, but got {json_type(item)} instead.",
                    "Input should be an object",
                    "invalid_type",
                )
        return items
