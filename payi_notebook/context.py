"""Business context for captured calls: validation, nesting, and its xProxy header form.

A ``Context`` is immutable. Scopes nest (a ``%%payi`` cell inside ``%payi on``, a
``pn.track`` inside a cell, ...) following Pay-i's SDK rules:

- ``limit_ids`` are unioned; an explicit empty list drops the inherited ones;
- a new use case name starts a new use case instance (a fresh uuid4 id unless one is
  given); ``None`` inherits the whole use case, ``""`` clears it;
- other strings: ``None`` inherits, ``""`` clears;
- property dicts merge, the child winning; an explicit ``{}`` drops the inherited ones.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

USE_CASE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # Pay-i's docs: alnum . _ -, at most 64
LIMIT_ID = re.compile(r"[^,\s]+")
# Pay-i's spec types use case versions as int32 (BulkIngestRequest.use_case_version) and its
# docs start them at 1.
MAX_USE_CASE_VERSION = 2**31 - 1
# Pay-i documents no length for ids and names other than use case names; ours keeps every
# xProxy header (and a limit id in a URL path) far below the usual 8 KB server header limits.
MAX_TEXT_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EMPTY: Mapping[str, str] = MappingProxyType({})


class ContextError(ValueError):
    """A context value Pay-i would refuse; the message says what to fix."""


def _frozen(props: Mapping[str, Any] | None) -> Mapping[str, str]:
    if not props:
        return EMPTY
    return MappingProxyType({str(k): ("" if v is None else str(v)) for k, v in props.items()})


@dataclass(frozen=True, slots=True)
class Context:
    """The resolved attribution of a call. ``proxy``/``log_prompt_and_response`` None = global setting."""

    use_case_name: str | None = None
    use_case_id: str | None = None
    use_case_version: int | None = None
    use_case_step: str | None = None
    user_id: str | None = None
    account_name: str | None = None
    limit_ids: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    use_case_properties: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    proxy: bool | None = None
    log_prompt_and_response: bool | None = None

    def ingest_headers(self) -> dict[str, str]:
        """Context as the ``xProxy-*`` headers ``POST /api/v1/ingest`` accepts."""
        headers: dict[str, str] = {}
        if self.limit_ids:
            headers["xProxy-Limit-IDs"] = ",".join(self.limit_ids)
        for name, value in (
            ("xProxy-UseCase-Name", self.use_case_name),
            ("xProxy-UseCase-ID", self.use_case_id),
            ("xProxy-UseCase-Step", self.use_case_step),
            ("xProxy-User-ID", self.user_id),
            ("xProxy-Account-Name", self.account_name),
        ):
            if value:
                headers[name] = value
        if self.use_case_version is not None and self.use_case_name:
            headers["xProxy-UseCase-Version"] = str(self.use_case_version)
        if self.log_prompt_and_response is False:
            headers["xProxy-Logging-Disable"] = "True"
        return headers

    def proxy_headers(self) -> dict[str, str]:
        """Context as proxy-route headers: the ingest ones plus base64 compact-JSON properties."""
        headers = self.ingest_headers()
        if self.properties:
            headers["xProxy-Request-Properties"] = _b64json(self.properties)
        if self.use_case_properties and self.use_case_name:
            headers["xProxy-UseCase-Properties"] = _b64json(self.use_case_properties)
        return headers

    def to_json(self) -> dict[str, Any]:
        """Every field as plain JSON values (journal records, child processes, Dask messages); ``from_json`` reads it back."""
        return {
            "use_case_name": self.use_case_name,
            "use_case_id": self.use_case_id,
            "use_case_version": self.use_case_version,
            "use_case_step": self.use_case_step,
            "user_id": self.user_id,
            "account_name": self.account_name,
            "limit_ids": list(self.limit_ids),
            "properties": dict(self.properties),
            "use_case_properties": dict(self.use_case_properties),
            "proxy": self.proxy,
            "log_prompt_and_response": self.log_prompt_and_response,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Context:
        """A context from ``to_json``'s values (keys it lacks keep their defaults)."""
        return cls(
            use_case_name=data.get("use_case_name"),
            use_case_id=data.get("use_case_id"),
            use_case_version=data.get("use_case_version"),
            use_case_step=data.get("use_case_step"),
            user_id=data.get("user_id"),
            account_name=data.get("account_name"),
            limit_ids=tuple(data.get("limit_ids") or ()),
            properties=_frozen(data.get("properties")),
            use_case_properties=_frozen(data.get("use_case_properties")),
            proxy=data.get("proxy"),
            log_prompt_and_response=data.get("log_prompt_and_response"),
        )


def _b64json(props: Mapping[str, str]) -> str:
    return base64.b64encode(json.dumps(dict(props), separators=(",", ":")).encode()).decode("ascii")


def _check_text(option: str, value: str | None) -> str | None:
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        raise ContextError(f"{option} must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS:
        raise ContextError(f"{option} is {len(value)} characters long; use at most {MAX_TEXT_CHARS}")
    if _CONTROL.search(value):
        raise ContextError(f"{option} must not contain control characters or newlines")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ContextError(f"{option} {value!r} has characters an HTTP header cannot carry; use ASCII") from None
    return value


def check_use_case_name(name: str | None) -> str | None:
    """None/"" pass; anything else must be 1-64 chars of ``[A-Za-z0-9._-]``."""
    if name is None or name == "":
        return name
    if not isinstance(name, str) or not USE_CASE_NAME.fullmatch(name):
        raise ContextError(
            f"use case name {name!r} is invalid: use 1-64 characters from A-Z a-z 0-9 . _ - (no spaces)"
        )
    return name


def check_version(version: Any) -> int | None:
    """A use case version is an integer from 1 to ``MAX_USE_CASE_VERSION`` (Pay-i's int32)."""
    if version is None:
        return None
    problem = f"use case version must be an integer from 1 to {MAX_USE_CASE_VERSION}, got {version!r}"
    if isinstance(version, bool):
        raise ContextError(problem)
    if isinstance(version, str):
        text = version.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            raise ContextError(problem)
        version = int(text)
    if not isinstance(version, int) or not 1 <= version <= MAX_USE_CASE_VERSION:
        raise ContextError(problem)
    return version


def check_limit_ids(limit_ids: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Limit ids as a tuple; each must be non-empty with no comma or whitespace."""
    if limit_ids is None:
        return None
    if isinstance(limit_ids, str):
        limit_ids = [limit_ids]
    out: list[str] = []
    for limit_id in limit_ids:
        if not isinstance(limit_id, str) or not LIMIT_ID.fullmatch(limit_id):
            raise ContextError(f"limit id {limit_id!r} is invalid: give one id per --limit, without commas or spaces")
        _check_text("limit id", limit_id)
        if limit_id not in out:
            out.append(limit_id)
    return tuple(out)


def parse_property(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` → (key, value); the key must be non-empty."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ContextError(f"property {text!r} is malformed: write --prop KEY=VALUE")
    return key, value


def check_properties(option: str, props: Mapping[str, Any] | None) -> Mapping[str, str] | None:
    if props is None:
        return None
    if not isinstance(props, Mapping):
        raise ContextError(f"{option} must be a mapping of str to str, got {type(props).__name__}")
    for key in props:
        if not isinstance(key, str) or not key:
            raise ContextError(f"{option} keys must be non-empty strings, got {key!r}")
    return _frozen(props)


def check_budget(value: Any, option: str = "budget") -> float | None:
    """A budget in USD: a positive finite number (``"0.50"`` and ``"$0.50"`` accepted); None passes."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().removeprefix("$")
        try:
            value = float(text)
        except ValueError:
            raise ContextError(f"{option} must be an amount in USD like 0.50, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContextError(f"{option} must be an amount in USD like 0.50, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ContextError(f"{option} must be a positive amount in USD like 0.50, got {value!r}")
    return float(value)


def check_thresholds(values: Any) -> tuple[float, ...]:
    """Warning thresholds as fractions of a budget, each in (0, 1]."""
    try:
        out = tuple(sorted({float(v) for v in values}))
    except (TypeError, ValueError):
        raise ContextError(f"budget thresholds must be fractions like [0.8, 0.95], got {values!r}") from None
    if any(not 0 < t <= 1 for t in out):
        raise ContextError(f"budget thresholds must be fractions in (0, 1] like [0.8, 0.95], got {values!r}")
    return out


def _merge_props(parent: Mapping[str, str], child: Mapping[str, str] | None) -> Mapping[str, str]:
    if child is None:
        return parent
    if not child:
        return EMPTY
    if not parent:
        return child
    return MappingProxyType({**parent, **child})


def check_options(
    *,
    use_case_name: str | None = None,
    use_case_id: str | None = None,
    use_case_version: int | str | None = None,
    use_case_step: str | None = None,
    user_id: str | None = None,
    account_name: str | None = None,
    limit_ids: Iterable[str] | str | None = None,
    properties: Mapping[str, Any] | None = None,
    use_case_properties: Mapping[str, Any] | None = None,
    proxy: bool | None = None,
    log_prompt_and_response: bool | None = None,
) -> dict[str, Any]:
    """Validated, normalised scope options; raises ContextError (before anything runs) on bad input."""
    check_use_case_name(use_case_name)
    for option, value in (
        ("use case id", use_case_id),
        ("use case step", use_case_step),
        ("user id", user_id),
        ("account name", account_name),
    ):
        _check_text(option, value)
    return {
        "use_case_name": use_case_name,
        "use_case_id": use_case_id,
        "use_case_version": check_version(use_case_version),
        "use_case_step": use_case_step,
        "user_id": user_id,
        "account_name": account_name,
        "limit_ids": check_limit_ids(limit_ids),
        "properties": check_properties("properties", properties),
        "use_case_properties": check_properties("use_case_properties", use_case_properties),
        "proxy": proxy,
        "log_prompt_and_response": log_prompt_and_response,
    }


def derive(parent: Context, **options: Any) -> Context:
    """A child context of ``parent`` (options as ``check_options`` takes them)."""
    return merge(parent, check_options(**options))


def merge(parent: Context, options: Mapping[str, Any]) -> Context:
    """A child context from options already passed through ``check_options``."""
    use_case_name = options["use_case_name"]
    use_case_id = options["use_case_id"]
    version = options["use_case_version"]
    use_case_step = options["use_case_step"]
    limits = options["limit_ids"]
    uc_props = options["use_case_properties"]
    if use_case_name == "":
        uc: dict[str, Any] = dict(use_case_name=None, use_case_id=None, use_case_version=None, use_case_step=None)
        uc_props_merged: Mapping[str, str] = EMPTY
    elif use_case_name is not None and use_case_name != parent.use_case_name:
        uc = dict(
            use_case_name=use_case_name,
            use_case_id=use_case_id or uuid.uuid4().hex,
            use_case_version=version,
            use_case_step=use_case_step or None,
        )
        uc_props_merged = uc_props or EMPTY
    else:
        name = use_case_name or parent.use_case_name
        if name is None and (use_case_id or version is not None or use_case_step):
            raise ContextError("a use case id, version or step needs a use case name: add --use-case NAME")
        uc = dict(
            use_case_name=name,
            use_case_id=_inherit(parent.use_case_id, use_case_id),
            use_case_version=parent.use_case_version if version is None else version,
            use_case_step=_inherit(parent.use_case_step, use_case_step),
        )
        uc_props_merged = _merge_props(parent.use_case_properties, uc_props)

    if limits is None:
        merged_limits = parent.limit_ids
    elif not limits:
        merged_limits = ()
    else:
        merged_limits = parent.limit_ids + tuple(i for i in limits if i not in parent.limit_ids)

    proxy = options["proxy"]
    log = options["log_prompt_and_response"]
    return replace(
        parent,
        **uc,
        user_id=_inherit(parent.user_id, options["user_id"]),
        account_name=_inherit(parent.account_name, options["account_name"]),
        limit_ids=merged_limits,
        properties=_merge_props(parent.properties, options["properties"]),
        use_case_properties=uc_props_merged,
        proxy=parent.proxy if proxy is None else proxy,
        log_prompt_and_response=parent.log_prompt_and_response if log is None else log,
    )


def _inherit(parent: str | None, child: str | None) -> str | None:
    if child is None:
        return parent
    return child or None
