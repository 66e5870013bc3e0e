"""Validate bodies against the published Pay-i OpenAPI spec (the shared reference copy).

Tests hold the sandbox (and any client) to the spec in ``shared/reference``, not to the
vendored copy the sandbox itself loads, so a drifted vendored copy cannot hide a mismatch.
"""

from __future__ import annotations

import json
import os
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

REPO = Path(__file__).resolve().parents[2]
VENDORED = REPO / "payi_notebook" / "sandbox" / "payi-openapi.json"
FALLBACK = Path("/work/shared/reference/payi-openapi.json")
RELATIVE = Path("shared") / "reference" / "payi-openapi.json"
SPEC_URI = "urn:payi:openapi:shared"


def shared_spec_path() -> Path | None:
    """``$PAYI_OPENAPI_SPEC``, else ``shared/reference/payi-openapi.json`` above the repo, else /work/shared."""
    env = os.environ.get("PAYI_OPENAPI_SPEC")
    if env:
        return Path(env)
    for folder in (REPO, *REPO.parents):
        if (folder / RELATIVE).is_file():
            return folder / RELATIVE
    return FALLBACK if FALLBACK.is_file() else None


@cache
def spec() -> dict[str, Any]:
    path = shared_spec_path()
    if path is None:
        warnings.warn(f"shared Pay-i spec not found; validating against the vendored copy {VENDORED}", stacklevel=2)
        path = VENDORED
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT4))


def _validator(pointer: str) -> OAS30Validator:
    return OAS30Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=_registry(), format_checker=oas30_format_checker)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _check(pointer: str, body: Any, what: str) -> None:
    error = best_match(_validator(pointer).iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise AssertionError(f"{what} violates the spec at {where}: {error.message}\nbody: {json.dumps(body)[:2000]}")


def validate_component(name: str, body: Any) -> None:
    """Assert ``body`` fits ``#/components/schemas/<name>`` (short names like ``ProxyResult`` work)."""
    schemas = spec()["components"]["schemas"]
    if name not in schemas:
        matches = [full for full in schemas if full.endswith(f".{name}")]
        assert len(matches) == 1, f"no single component named {name!r}: {matches}"
        name = matches[0]
    _check(f"/components/schemas/{_escape(name)}", body, name)


def validate_response(path: str, method: str, status: int, body: Any) -> None:
    """Assert ``body`` fits the spec's response schema for (``path``, ``method``, ``status``)."""
    operation = spec()["paths"][path][method.lower()]
    assert str(status) in operation["responses"], f"the spec has no {status} response for {method.upper()} {path}"
    content = operation["responses"][str(status)].get("content", {})
    assert "application/json" in content, f"the spec gives no JSON body for {status} on {method.upper()} {path}"
    pointer = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}/content/application~1json/schema"
    _check(pointer, body, f"{method.upper()} {path} {status}")


def spec_path(path: str) -> str:
    """The spec's path template that a concrete request path (``/api/v1/...``) belongs to."""
    parts = path.rstrip("/").split("/")
    best: tuple[int, str] | None = None
    for template in spec()["paths"]:
        pieces = template.split("/")
        if len(pieces) != len(parts):
            continue
        if all(p.startswith("{") or p == q for p, q in zip(pieces, parts)):
            params = sum(p.startswith("{") for p in pieces)
            if best is None or params < best[0]:
                best = (params, template)
    assert best is not None, f"{path} is not a path of the Pay-i spec"
    return best[1]


def validate_request(path: str, method: str, body: Any) -> None:
    """Assert a request body fits the spec's requestBody schema for (``path`` template, ``method``)."""
    operation = spec()["paths"][path][method.lower()]
    if "requestBody" not in operation:
        assert body is None, f"{method.upper()} {path} takes no body in the spec, got {body!r}"
        return
    pointer = f"/paths/{_escape(path)}/{method.lower()}/requestBody/content/application~1json/schema"
    _check(pointer, body, f"{method.upper()} {path} request")
