"""Use case definitions, their instances, KPI definitions and KPI scores, in the sandbox's SQLite file.

Pay-i's model: a **definition** (name, description, version, optional default limit) has
**instances** (one run of the use case, with an id); each definition has **KPIs** (name,
type, goal) that instances are **scored** on. Ingest and proxy calls naming a use case create
its instance on first sight. In ``strict`` mode (``start(strict_use_cases=True)``) a call
naming a use case without a definition is refused with ``use_case_not_found``, as a Pay-i
configured to require definitions does; otherwise any name is accepted.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, replace
from typing import Any

from . import errors
from .attribution import Attribution
from .kpis import Kpis
from .limits import ALLOW, Limit
from .record import iso, utc_now
from .store import Store, page

USE_CASE_NOT_FOUND = "use_case_not_found"
USE_CASE_EXISTS = "use_case_already_exists"
INSTANCE_NOT_FOUND = "use_case_instance_not_found"

SCHEMA = """
CREATE TABLE IF NOT EXISTS use_cases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    logging_enabled INTEGER,
    limit_config TEXT,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS use_case_instances (
    use_case_name TEXT NOT NULL,
    use_case_id TEXT NOT NULL,
    version INTEGER,
    limit_id TEXT,
    properties TEXT,
    PRIMARY KEY (use_case_name, use_case_id)
);
"""

@dataclass
class Definition:
    seq: int
    name: str
    description: str
    logging_enabled: bool | None
    limit_config: dict[str, Any] | None
    version: int

    def wire(self, request_id: str) -> dict[str, Any]:
        """A ``UseCaseDefinitionResponse``."""
        body: dict[str, Any] = {
            "request_id": request_id,
            "name": self.name,
            "description": self.description,
            "type_version": self.version,
        }
        if self.logging_enabled is not None:
            body["logging_enabled"] = self.logging_enabled
        if self.limit_config is not None:
            body["limit_config"] = self.limit_config
        return body


def _definition(row: sqlite3.Row | tuple[Any, ...]) -> Definition:
    seq, name, description, logging, limit, version = row
    return Definition(
        seq,
        name,
        description,
        None if logging is None else bool(logging),
        json.loads(limit) if limit else None,
        version,
    )


def not_found(name: str) -> errors.PayiError:
    return errors.PayiError(
        404, USE_CASE_NOT_FOUND, f"use case {name!r} is not defined; create it with POST /api/v1/use_cases/definitions"
    )


class UseCases:
    """The use case tables on the sandbox's store; ``strict`` requires a definition for every named use case."""

    def __init__(self, store: Store, strict: bool = False) -> None:
        self.store = store
        self.strict = strict
        with store.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        self.kpis = Kpis(store, self.new_instance_once)

    # definitions -----------------------------------------------------------------------

    def definition(self, db: sqlite3.Connection, name: str) -> Definition | None:
        row = db.execute(
            "SELECT seq, name, description, logging_enabled, limit_config, version FROM use_cases WHERE name = ?",
            (name,),
        ).fetchone()
        return _definition(row) if row else None

    def require(self, db: sqlite3.Connection, name: str) -> Definition:
        found = self.definition(db, name)
        if found is None:
            raise not_found(name)
        return found

    def definitions(self, name: str | None, ascending: bool, after: int | None, count: int) -> list[Definition]:
        select = "SELECT seq, name, description, logging_enabled, limit_config, version FROM use_cases"
        return [_definition(row) for row in page(self.store, select, {"name": name}, ascending, after, count)]

    def insert(self, db: sqlite3.Connection, definition: Definition) -> Definition:
        cursor = db.execute(
            "INSERT INTO use_cases (name, description, logging_enabled, limit_config, version) VALUES (?, ?, ?, ?, ?)",
            (
                definition.name,
                definition.description,
                definition.logging_enabled,
                json.dumps(definition.limit_config) if definition.limit_config is not None else None,
                definition.version,
            ),
        )
        return replace(definition, seq=int(cursor.lastrowid or 0))

    def save(self, db: sqlite3.Connection, definition: Definition) -> None:
        db.execute(
            "UPDATE use_cases SET description = ?, logging_enabled = ?, limit_config = ?, version = ? WHERE name = ?",
            (
                definition.description,
                definition.logging_enabled,
                json.dumps(definition.limit_config) if definition.limit_config is not None else None,
                definition.version,
                definition.name,
            ),
        )

    def delete(self, db: sqlite3.Connection, name: str) -> None:
        for table, column in (
            ("use_cases", "name"),
            ("use_case_instances", "use_case_name"),
            ("kpis", "use_case_name"),
            ("kpi_scores", "use_case_name"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))

    # instances -------------------------------------------------------------------------

    def instance(self, db: sqlite3.Connection, name: str, use_case_id: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT version, limit_id FROM use_case_instances WHERE use_case_name = ? AND use_case_id = ?",
            (name, use_case_id),
        ).fetchone()
        if row is None:
            return None
        body: dict[str, Any] = {"use_case_id": use_case_id, "use_case_name": name}
        if row[0] is not None:
            body["type_version"] = row[0]
        if row[1] is not None:
            body["limit_id"] = row[1]
        return body

    def new_instance(
        self, db: sqlite3.Connection, name: str, use_case_id: str | None = None, version: int | None = None
    ) -> dict[str, Any]:
        """An instance (of the latest version unless ``version``), with its own limit if the definition has a limit config."""
        definition = self.definition(db, name)
        use_case_id = use_case_id or str(uuid.uuid4())
        limit_id = None
        if definition is not None and definition.limit_config is not None:
            limit_id = self._instance_limit(db, definition, use_case_id)
        if version is None and definition is not None:
            version = definition.version
        db.execute(
            "INSERT OR IGNORE INTO use_case_instances (use_case_name, use_case_id, version, limit_id) VALUES (?, ?, ?, ?)",
            (name, use_case_id, version, limit_id),
        )
        found = self.instance(db, name, use_case_id)
        assert found is not None
        return found

    def _instance_limit(self, db: sqlite3.Connection, definition: Definition, use_case_id: str) -> str:
        config = definition.limit_config or {}
        now = iso(utc_now())
        limit = Limit(
            limit_id=str(uuid.uuid4()),
            limit_name=f"{definition.name}-{use_case_id}",
            max=float(config["max"]),
            threshold=config.get("threshold"),
            limit_type=config.get("limit_type") or ALLOW,
            created=now,
            updated=now,
            properties=config.get("properties"),
        )
        self.store.insert_limit(db, limit)
        return limit.limit_id

    def new_instance_once(self, db: sqlite3.Connection, name: str, use_case_id: str) -> None:
        """Create the instance unless it exists (a score may come before any call)."""
        if self.instance(db, name, use_case_id) is None:
            self.new_instance(db, name, use_case_id)

    def delete_instance(self, db: sqlite3.Connection, name: str, use_case_id: str) -> bool:
        db.execute("DELETE FROM kpi_scores WHERE use_case_name = ? AND use_case_id = ?", (name, use_case_id))
        return (
            db.execute(
                "DELETE FROM use_case_instances WHERE use_case_name = ? AND use_case_id = ?", (name, use_case_id)
            ).rowcount
            > 0
        )

    def set_instance_properties(
        self, db: sqlite3.Connection, name: str, use_case_id: str, props: dict[str, Any]
    ) -> None:
        row = db.execute(
            "SELECT properties FROM use_case_instances WHERE use_case_name = ? AND use_case_id = ?", (name, use_case_id)
        ).fetchone()
        merged = {**(json.loads(row[0]) if row and row[0] else {}), **props}
        kept = {key: value for key, value in merged.items() if value is not None}
        db.execute(
            "UPDATE use_case_instances SET properties = ? WHERE use_case_name = ? AND use_case_id = ?",
            (json.dumps(kept), name, use_case_id),
        )

    # what ingest and the proxy ask -------------------------------------------------------

    def check(self, db: sqlite3.Connection, who: Attribution) -> None:
        """In strict mode, refuse a call naming a use case that has no definition (400, as on ingest)."""
        if self.strict and who.use_case_name and self.definition(db, who.use_case_name) is None:
            raise errors.bad_request(
                USE_CASE_NOT_FOUND,
                f"use case {who.use_case_name!r} is not defined; create it first (POST /api/v1/use_cases/definitions)",
            )

    def admit(self, db: sqlite3.Connection, who: Attribution) -> Attribution:
        """Check ``who`` (strict mode), record its instance, and fill in the version Pay-i assigns."""
        self.check(db, who)
        if not who.use_case_name or not who.use_case_id:
            return who
        known = self.instance(db, who.use_case_name, who.use_case_id)
        if known is None:
            known = self.new_instance(db, who.use_case_name, who.use_case_id, who.use_case_version)
        if who.use_case_version is None and known.get("type_version") is not None:
            return replace(who, use_case_version=known["type_version"])
        return who
