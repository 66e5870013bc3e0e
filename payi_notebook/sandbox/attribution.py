"""Who and what an event is for: limits, tags, user, account, use case, properties.

Single ingest and the proxy carry this in ``xProxy-*`` headers, bulk ingest in each item's
body. Both are parsed into one ``Attribution`` and checked against Pay-i's documented rules
(use case names, tags, limit ID lists) before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors

USE_CASE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
TAG = re.compile(r"[A-Za-z0-9_-]+")
LOGGING_VALUES = {"True": True, "False": False}
# The spec does not say which Base64 alphabet; accept both.
URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


@dataclass(frozen=True)
class Attribution:
    limit_ids: tuple[str, ...] = ()
    request_tags: tuple[str, ...] = ()
    user_id: str | None = None
    account_name: str | None = None
    use_case_name: str | None = None
    use_case_id: str | None = None
    use_case_version: int | None = None
    use_case_step: str | None = None
    resource_scope: str | None = None
    logging_disabled: bool = False
    properties: dict[str, Any] | None = None
    use_case_properties: dict[str, Any] | None = None

    def check(self) -> None:
        """Pay-i's rules for names, tags and limit lists (stateless part)."""
        if self.use_case_name is not None and not USE_CASE_NAME.fullmatch(self.use_case_name):
            raise errors.bad_request(
                errors.INVALID_USE_CASE_NAME,
                f"use case name {self.use_case_name!r} is invalid; use 1-64 of A-Z a-z 0-9 . _ - (no spaces)",
            )
        for tag in self.request_tags:
            if not TAG.fullmatch(tag):
                raise errors.bad_request(errors.INVALID_TAGS, f"request tag {tag!r} is invalid; use A-Z a-z 0-9 _ -")
        seen: set[str] = set()
        for limit_id in self.limit_ids:
            if limit_id in seen:
                raise errors.bad_request(
                    errors.DUPLICATE_LIMIT_ID, f"limit ID {limit_id!r} is listed twice; name each limit once"
                )
            seen.add(limit_id)

    def fields(self) -> dict[str, Any]:
        """The attribution as stored with an event (only what was given)."""
        return {
            name: value
            for name, value in (
                ("limit_ids", list(self.limit_ids)),
                ("request_tags", list(self.request_tags)),
                ("user_id", self.user_id),
                ("account_name", self.account_name),
                ("use_case_name", self.use_case_name),
                ("use_case_id", self.use_case_id),
                ("use_case_version", self.use_case_version),
                ("use_case_step", self.use_case_step),
                ("resource_scope", self.resource_scope),
                ("logging_disabled", self.logging_disabled),
                ("properties", self.properties),
                ("use_case_properties", self.use_case_properties),
            )
            if value not in (None, [])
        }


def _split(value: str | None) -> tuple[str, ...]:
    """A comma-separated header value as its non-empty, trimmed parts."""
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _b64_json(name: str, value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = value.strip().translate(URLSAFE_TO_STANDARD)
    try:
        decoded = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, f"header {name}: not a Base64-encoded JSON object"
        ) from None
    if not isinstance(decoded, dict):
        raise errors.bad_request(errors.REQUEST_PROCESSING_ERROR, f"header {name}: the decoded JSON must be an object")
    return {key: None if item is None else str(item) for key, item in decoded.items()}


def _logging_disabled(value: str | None) -> bool:
    if value is None:
        return False
    if value not in LOGGING_VALUES:
        raise errors.bad_request(
            errors.REQUEST_PROCESSING_ERROR, f"header xProxy-Logging-Disable: {value!r} must be 'True' or 'False'"
        )
    return LOGGING_VALUES[value]


def _blank_to_none(value: str | None) -> str | None:
    return value if value else None


def from_headers(headers: Mapping[str, str], proxy: bool) -> Attribution:
    """Attribution from ``xProxy-*`` headers (header names case-insensitive)."""
    version = headers.get("xproxy-usecase-version")
    return Attribution(
        limit_ids=_split(headers.get("xproxy-limit-ids")),
        request_tags=_split(headers.get("xproxy-request-tags")),
        user_id=_blank_to_none(headers.get("xproxy-user-id")),
        account_name=_blank_to_none(headers.get("xproxy-account-name")),
        use_case_name=_blank_to_none(headers.get("xproxy-usecase-name")),
        use_case_id=_blank_to_none(headers.get("xproxy-usecase-id")),
        use_case_version=int(version) if version else None,
        use_case_step=_blank_to_none(headers.get("xproxy-usecase-step")),
        resource_scope=_blank_to_none(headers.get("xproxy-resource-scope")),
        logging_disabled=_logging_disabled(headers.get("xproxy-logging-disable")),
        properties=_b64_json("xProxy-Request-Properties", headers.get("xproxy-request-properties")) if proxy else None,
        use_case_properties=(
            _b64_json("xProxy-UseCase-Properties", headers.get("xproxy-usecase-properties")) if proxy else None
        ),
    )


def from_bulk_item(item: Mapping[str, Any]) -> Attribution:
    """Attribution from a (schema-valid) ``BulkIngestRequest`` item's own fields."""
    return Attribution(
        limit_ids=tuple(item.get("limit_ids") or ()),
        request_tags=tuple(item.get("request_tags") or ()),
        user_id=item.get("user_id") or None,
        account_name=item.get("account_name") or None,
        use_case_name=item.get("use_case_name") or None,
        use_case_id=item.get("use_case_id") or None,
        use_case_version=item.get("use_case_version"),
        use_case_step=item.get("use_case_step") or None,
        resource_scope=item.get("scope") or None,
        properties=item.get("properties"),
        use_case_properties=item.get("use_case_properties"),
    )
