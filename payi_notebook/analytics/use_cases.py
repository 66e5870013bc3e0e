"""``pn.use_cases``: Pay-i use case definitions from a notebook.

A definition names a use case (what ``%%payi --use-case NAME`` tags calls with), holds its
version (bumped only by ``increment_version``: compare prompt versions by it) and an optional
default limit each new instance gets. Tables come back as DataFrames, one definition as a
``UseCase``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..client import PayiError
from . import routes
from .calls import AnalyticsError, ClientFactory, call, use_case_name
from .routes import AUTO_DESCRIPTION

COLUMNS = ["name", "description", "version", "logging_enabled", "limit_max", "limit_type", "limit_threshold"]


@dataclass(frozen=True)
class UseCase:
    """One use case definition as Pay-i reports it."""

    name: str
    description: str
    version: int
    logging_enabled: bool | None = None
    limit_config: Mapping[str, Any] | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> UseCase:
        return cls(
            name=data["name"],
            description=data["description"],
            version=int(data.get("type_version") or 1),
            logging_enabled=data.get("logging_enabled"),
            limit_config=data.get("limit_config"),
        )

    def row(self) -> dict[str, Any]:
        limit = self.limit_config or {}
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "logging_enabled": self.logging_enabled,
            "limit_max": limit.get("max", math.nan),
            "limit_type": limit.get("limit_type"),
            "limit_threshold": limit.get("threshold", math.nan) if limit.get("threshold") is not None else math.nan,
        }

    def describe(self) -> str:
        limit = self.limit_config
        budget = f", default limit ${limit['max']:.4f} {limit.get('limit_type') or 'allow'}" if limit else ""
        return f"{self.name} v{self.version}: {self.description}{budget}"

    def __repr__(self) -> str:
        return f"UseCase({self.describe()})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(self.describe())}</code>"


class UseCases:
    """Use case definitions on the configured Pay-i endpoint (or the sandbox)."""

    def __init__(self, client: ClientFactory) -> None:
        self._client = client

    def all(self, name: str | None = None) -> list[UseCase]:
        items = call(self._client, "list use cases", lambda c: c.run(routes.list_use_cases(name)))
        return [UseCase.from_api(item) for item in items]

    def list(self, name: str | None = None) -> pd.DataFrame:
        """Every definition: name, description, version and default limit."""
        frame = pd.DataFrame([uc.row() for uc in self.all(name)], columns=COLUMNS)
        return frame.astype({"version": "int64", "limit_max": "float64", "limit_threshold": "float64"})

    def get(self, name: str) -> UseCase:
        name = use_case_name(name)
        return UseCase.from_api(
            call(self._client, f"get use case {name!r}", lambda c: c.run(routes.use_case("GET", name)))
        )

    def create(
        self,
        name: str,
        description: str | None = None,
        *,
        logging_enabled: bool | None = None,
        limit: float | None = None,
        limit_type: str = "allow",
        threshold: float | None = None,
    ) -> UseCase:
        """Define a use case (``limit``: USD max of the limit every new instance gets)."""
        name = use_case_name(name)
        try:
            config = None if limit is None else routes.limit_config(limit, limit_type, threshold)
        except ValueError as exc:
            raise AnalyticsError(str(exc)) from None
        answer = call(
            self._client,
            f"create use case {name!r}",
            lambda c: c.run(routes.create_use_case(name, description or name, logging_enabled, config)),
        )
        return UseCase.from_api(answer)

    def update(self, name: str, description: str | None = None, logging_enabled: bool | None = None) -> UseCase:
        name = use_case_name(name)
        answer = call(
            self._client,
            f"update use case {name!r}",
            lambda c: c.run(routes.update_use_case(name, description, logging_enabled)),
        )
        return UseCase.from_api(answer) if answer else self.get(name)

    def delete(self, name: str) -> None:
        """Delete the definition (and, at Pay-i, its KPI definitions)."""
        name = use_case_name(name)
        call(self._client, f"delete use case {name!r}", lambda c: c.run(routes.use_case("DELETE", name)))

    def increment_version(self, name: str) -> int:
        """Start the next version of the use case; returns its number (pass it as ``--use-case-version``)."""
        name = use_case_name(name)
        answer = call(
            self._client,
            f"increment the version of {name!r}",
            lambda c: c.run(routes.use_case("POST", name, "/increment_version")),
        )
        return UseCase.from_api(answer).version

    def set_limit(self, name: str, max: float, type: str = "allow", threshold: float | None = None) -> UseCase:
        """The limit each new instance of the use case gets (``max`` USD; ``type`` allow or block)."""
        name = use_case_name(name)
        try:
            body = routes.limit_config(max, type, threshold)
        except ValueError as exc:
            raise AnalyticsError(str(exc)) from None
        answer = call(
            self._client, f"set the limit of {name!r}", lambda c: c.run(routes.create_use_case_limit(name, body))
        )
        return UseCase.from_api(answer)

    def remove_limit(self, name: str) -> UseCase:
        name = use_case_name(name)
        answer = call(
            self._client,
            f"remove the limit of {name!r}",
            lambda c: c.run(routes.use_case("DELETE", name, "/limit_config")),
        )
        return UseCase.from_api(answer)

    def new_instance(self, name: str) -> dict[str, Any]:
        """Ask Pay-i for a new instance id (``%%payi`` makes its own per cell; this gets Pay-i's limit id too)."""
        name = use_case_name(name)
        return call(self._client, f"create an instance of {name!r}", lambda c: c.run(routes.instance("POST", name)))

    def ensure(self, name: str, description: str | None = None) -> bool:
        """Define ``name`` unless it exists; True if this call defined it."""
        name = use_case_name(name)
        try:
            self.create(name, description or AUTO_DESCRIPTION)
        except AnalyticsError as exc:
            if exc.code == "use_case_already_exists":
                return False
            raise
        return True

    def __repr__(self) -> str:
        return (
            "pn.use_cases: .list() .get(name) .create(name, description, limit=None) .update(name, description=) "
            ".delete(name) .increment_version(name) .set_limit(name, max, type=) .remove_limit(name)"
        )


def explain_undefined(use_cases: UseCases, name: str, create: bool) -> str:
    """After a proxied cell Pay-i refused with ``use_case_not_found``: define it (if allowed) and say so in one line."""
    if not create:
        return (
            f"payi: Pay-i requires a definition for use case {name!r}: pn.use_cases.create({name!r}, description=...), "
            "then run the cell again"
        )
    try:
        use_cases.ensure(name)
    except (AnalyticsError, PayiError) as exc:
        return f"payi: Pay-i requires a definition for use case {name!r} and defining it failed: {exc}"
    return f"payi: Pay-i requires a definition for use case {name!r}; payi_notebook defined it now: run the cell again"
