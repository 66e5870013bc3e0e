"""SQLite persistence for the sandbox: events (with their results) and limits.

One connection per sandbox, WAL journal, ``BEGIN IMMEDIATE`` around every read-modify-write,
so limit arithmetic and duplicate detection stay correct when two sandbox processes share one
file, and a sandbox restarted on the same ``--db`` finds everything it had.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from payi_notebook.files import private_file

from .limits import Limit, empty_counters

MAX_SEQ = 2**63 - 1  # SQLite's integer range: a seq or cursor past it cannot be looked up

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    provider_response_id TEXT,
    record TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_provider_id
    ON events (category, provider_response_id) WHERE provider_response_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS limits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    limit_id TEXT NOT NULL UNIQUE,
    limit_name TEXT NOT NULL UNIQUE,
    max REAL NOT NULL,
    threshold REAL,
    limit_type TEXT NOT NULL,
    properties TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    cost_input REAL NOT NULL DEFAULT 0,
    cost_output REAL NOT NULL DEFAULT 0,
    cost_total REAL NOT NULL DEFAULT 0,
    requests TEXT NOT NULL
);
"""

_LIMIT_COLUMNS = (
    "limit_id, limit_name, max, threshold, limit_type, properties, created, updated, "
    "cost_input, cost_output, cost_total, requests"
)


def _limit(row: Sequence[Any]) -> Limit:
    counters = empty_counters()
    counters.update(json.loads(row[11]))
    return Limit(
        limit_id=row[0],
        limit_name=row[1],
        max=row[2],
        threshold=row[3],
        limit_type=row[4],
        properties=json.loads(row[5]) if row[5] else None,
        created=row[6],
        updated=row[7],
        cost_input=row[8],
        cost_output=row[9],
        cost_total=row[10],
        requests=counters,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store:
    """Thread-safe access to the sandbox database at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        if path != ":memory:":  # prompts are stored here: 0600, and SQLite gives -wal/-shm the same mode
            for name in (path, f"{path}-wal", f"{path}-shm"):
                if name == path or os.path.exists(name):
                    private_file(name)
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction, committed on success, rolled back on error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # events -----------------------------------------------------------------------------

    def find_duplicate(self, db: sqlite3.Connection, category: str, provider_response_id: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT record FROM events WHERE category = ? AND provider_response_id = ?",
            (category, provider_response_id),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def insert_event(self, db: sqlite3.Connection, record: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO events (request_id, category, provider_response_id, record) VALUES (?, ?, ?, ?)",
            (record["request_id"], record["category"], record["provider_response_id"], _dumps(record)),
        )

    def event(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM events WHERE request_id = ?", (request_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def event_by_provider_id(self, category: str, provider_response_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.find_duplicate(self._db, category, provider_response_id)

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        """Every stored event in arrival order (``seq`` > ``after``), each with its ``seq``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, record FROM events WHERE seq > ? ORDER BY seq", (after,)).fetchall()
        return [{"seq": seq, **json.loads(record)} for seq, record in rows]

    # limits -----------------------------------------------------------------------------

    def limits_by_id(self, db: sqlite3.Connection, limit_ids: Sequence[str]) -> dict[str, Limit]:
        if not limit_ids:
            return {}
        marks = ",".join("?" * len(limit_ids))
        rows = db.execute(f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE limit_id IN ({marks})", tuple(limit_ids))
        return {row[0]: _limit(row) for row in rows}

    def limit(self, limit_id: str) -> Limit | None:
        with self._lock:
            return self.limits_by_id(self._db, [limit_id]).get(limit_id)

    def limit_by_name(self, db: sqlite3.Connection, name: str) -> Limit | None:
        row = db.execute(f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE limit_name = ?", (name,)).fetchone()
        return _limit(row) if row else None

    def list_limits(
        self, name: str | None, ascending: bool, after_seq: int | None, count: int
    ) -> list[tuple[int, Limit]]:
        """Up to ``count`` limits in creation order from just past ``after_seq``."""
        where: list[str] = []
        args: list[object] = []
        if name is not None:
            where.append("limit_name = ?")
            args.append(name)
        if after_seq is not None:
            where.append("seq > ?" if ascending else "seq < ?")
            args.append(after_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if ascending else "DESC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, {_LIMIT_COLUMNS} FROM limits {clause} ORDER BY seq {order} LIMIT ?",
                (*args, count),
            ).fetchall()
        return [(row[0], _limit(row[1:])) for row in rows]

    def insert_limit(self, db: sqlite3.Connection, limit: Limit) -> None:
        db.execute(
            f"INSERT INTO limits ({_LIMIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._limit_values(limit),
        )

    def save_limit(self, db: sqlite3.Connection, limit: Limit) -> None:
        values = self._limit_values(limit)
        db.execute(
            "UPDATE limits SET limit_name = ?, max = ?, threshold = ?, limit_type = ?, properties = ?, "
            "created = ?, updated = ?, cost_input = ?, cost_output = ?, cost_total = ?, requests = ? "
            "WHERE limit_id = ?",
            (*values[1:], values[0]),
        )

    def delete_limit(self, db: sqlite3.Connection, limit_id: str) -> bool:
        return db.execute("DELETE FROM limits WHERE limit_id = ?", (limit_id,)).rowcount > 0

    @staticmethod
    def _limit_values(limit: Limit) -> tuple[Any, ...]:
        return (
            limit.limit_id,
            limit.limit_name,
            limit.max,
            limit.threshold,
            limit.limit_type,
            _dumps(limit.properties) if limit.properties is not None else None,
            limit.created,
            limit.updated,
            limit.cost_input,
            limit.cost_output,
            limit.cost_total,
            _dumps(limit.requests),
        )


def page(store: Store, select: str, equal: dict[str, Any], ascending: bool, after: int | None, count: int) -> list[Any]:
    """Up to ``count`` rows of ``select`` matching ``equal`` (None: any), in ``seq`` order from past ``after``."""
    where = [f"{column} = ?" for column, value in equal.items() if value is not None]
    args: list[Any] = [value for value in equal.values() if value is not None]
    if after is not None:
        where.append("seq > ?" if ascending else "seq < ?")
        args.append(after)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with store.transaction() as db:
        return db.execute(
            f"{select}{clause} ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ?", (*args, count)
        ).fetchall()
