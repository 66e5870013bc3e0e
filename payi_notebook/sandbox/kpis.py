"""KPI definitions of a use case and the scores its instances get, in the sandbox's SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import errors
from .record import iso, utc_now
from .store import Store, page

KPI_NOT_FOUND = "kpi_not_found"
KPI_EXISTS = "kpi_already_exists"
INVALID_SCORE = "invalid_kpi_score"

SCHEMA = """
CREATE TABLE IF NOT EXISTS kpis (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    use_case_name TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    kpi_type TEXT NOT NULL,
    goal REAL NOT NULL,
    created TEXT NOT NULL,
    updated TEXT,
    UNIQUE (use_case_name, name)
);
CREATE TABLE IF NOT EXISTS kpi_scores (
    use_case_name TEXT NOT NULL,
    use_case_id TEXT NOT NULL,
    kpi_name TEXT NOT NULL,
    score REAL NOT NULL,
    created TEXT NOT NULL,
    updated TEXT,
    PRIMARY KEY (use_case_name, use_case_id, kpi_name)
);
"""

# Score ranges per KPI type (boolean scores are 0/1; likert scales start at 1).
SCORE_RANGES = {
    "boolean": (0.0, 1.0),
    "percentage": (0.0, 100.0),
    "likert5": (1.0, 5.0),
    "likert7": (1.0, 7.0),
    "likert10": (1.0, 10.0),
}


@dataclass
class Kpi:
    seq: int
    use_case_name: str
    name: str
    description: str
    kpi_type: str
    goal: float
    created: str
    updated: str | None

    def wire(self, request_id: str) -> dict[str, Any]:
        """A ``KpiResponse``."""
        body: dict[str, Any] = {
            "request_id": request_id,
            "name": self.name,
            "description": self.description,
            "kpi_type": self.kpi_type,
            "goal": self.goal,
            "created_timestamp": self.created,
        }
        if self.updated is not None:
            body["updated_timestamp"] = self.updated
        return body


def _kpi(row: sqlite3.Row | tuple[Any, ...]) -> Kpi:
    return Kpi(*row)


class Kpis:
    """The KPI tables; ``ensure_instance(db, use_case_name, use_case_id)`` creates an instance a score names."""

    def __init__(self, store: Store, ensure_instance: Callable[[sqlite3.Connection, str, str], None]) -> None:
        self.store = store
        self._ensure_instance = ensure_instance
        with store.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def get(self, db: sqlite3.Connection, use_case_name: str, name: str) -> Kpi | None:
        row = db.execute(
            "SELECT seq, use_case_name, name, description, kpi_type, goal, created, updated FROM kpis "
            "WHERE use_case_name = ? AND name = ?",
            (use_case_name, name),
        ).fetchone()
        return _kpi(row) if row else None

    def require(self, db: sqlite3.Connection, use_case_name: str, name: str) -> Kpi:
        found = self.get(db, use_case_name, name)
        if found is None:
            raise errors.PayiError(
                404,
                KPI_NOT_FOUND,
                f"KPI {name!r} is not defined for use case {use_case_name!r}; "
                f"create it with POST /api/v1/use_cases/definitions/{use_case_name}/kpis",
            )
        return found

    def page(self, use_case_name: str, name: str | None, ascending: bool, after: int | None, count: int) -> list[Kpi]:
        select = "SELECT seq, use_case_name, name, description, kpi_type, goal, created, updated FROM kpis"
        rows = page(self.store, select, {"use_case_name": use_case_name, "name": name}, ascending, after, count)
        return [_kpi(row) for row in rows]

    def insert(self, db: sqlite3.Connection, kpi: Kpi) -> Kpi:
        cursor = db.execute(
            "INSERT INTO kpis (use_case_name, name, description, kpi_type, goal, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kpi.use_case_name, kpi.name, kpi.description, kpi.kpi_type, kpi.goal, kpi.created, kpi.updated),
        )
        return replace(kpi, seq=int(cursor.lastrowid or 0))

    def save(self, db: sqlite3.Connection, kpi: Kpi) -> None:
        db.execute(
            "UPDATE kpis SET description = ?, goal = ?, updated = ? WHERE use_case_name = ? AND name = ?",
            (kpi.description, kpi.goal, kpi.updated, kpi.use_case_name, kpi.name),
        )

    def delete(self, db: sqlite3.Connection, use_case_name: str, name: str) -> None:
        db.execute("DELETE FROM kpis WHERE use_case_name = ? AND name = ?", (use_case_name, name))
        db.execute("DELETE FROM kpi_scores WHERE use_case_name = ? AND kpi_name = ?", (use_case_name, name))

    def score(self, db: sqlite3.Connection, kpi: Kpi, use_case_id: str, value: Any) -> None:
        """Set an instance's score (an instance first seen here is created, as a score may come before any call)."""
        score = check_score(kpi, value)
        self._ensure_instance(db, kpi.use_case_name, use_case_id)
        now = iso(utc_now())
        db.execute(
            "INSERT INTO kpi_scores (use_case_name, use_case_id, kpi_name, score, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (use_case_name, use_case_id, kpi_name) DO UPDATE SET score = excluded.score, updated = ?",
            (kpi.use_case_name, use_case_id, kpi.name, score, now, now),
        )

    def scores(
        self, db: sqlite3.Connection, use_case_name: str, use_case_id: str | None = None
    ) -> list[dict[str, Any]]:
        """``KpiScoreResponse`` items (plus ``use_case_id``) for one instance, or for every instance of a use case."""
        sql = (
            "SELECT s.use_case_id, s.kpi_name, k.kpi_type, s.score, s.created, s.updated FROM kpi_scores s "
            "JOIN kpis k ON k.use_case_name = s.use_case_name AND k.name = s.kpi_name WHERE s.use_case_name = ?"
        )
        args: list[Any] = [use_case_name]
        if use_case_id is not None:
            sql += " AND s.use_case_id = ?"
            args.append(use_case_id)
        rows = db.execute(sql + " ORDER BY s.rowid", args).fetchall()
        out = []
        for uid, kpi_name, kpi_type, score, created, updated in rows:
            item = {
                "use_case_id": uid,
                "kpi_name": kpi_name,
                "kpi_type": kpi_type,
                "score": score,
                "create_timestamp": created,
            }
            if updated is not None:
                item["update_timestamp"] = updated
            out.append(item)
        return out

    def all_scores(self) -> list[dict[str, Any]]:
        with self.store.transaction() as db:
            names = [row[0] for row in db.execute("SELECT DISTINCT use_case_name FROM kpi_scores ORDER BY 1")]
            return [{"use_case_name": name, **item} for name in names for item in self.scores(db, name)]


def check_score(kpi: Kpi, value: Any) -> float:
    """The score as a float, refused (400) if it is not a number or outside the KPI type's range."""
    if isinstance(value, bool):
        value = 1.0 if value else 0.0
    if not isinstance(value, (int, float)):
        raise errors.bad_request(INVALID_SCORE, f"score: {value!r} must be a number (or true/false)")
    low, high = SCORE_RANGES.get(kpi.kpi_type, (float("-inf"), float("inf")))
    if not low <= value <= high:
        raise errors.bad_request(
            INVALID_SCORE, f"score: {value} is outside {low:g}..{high:g}, the range of {kpi.kpi_type} KPI {kpi.name!r}"
        )
    if kpi.kpi_type == "boolean" and value not in (0, 1):
        raise errors.bad_request(
            INVALID_SCORE, f"score: {value} must be 0 or 1 (or true/false) for boolean KPI {kpi.name!r}"
        )
    return float(value)
