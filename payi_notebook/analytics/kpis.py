"""``pn.kpis`` and ``pn.kpi``: business outcomes per use case instance, next to what the instance cost.

A KPI is defined per use case (name, type, goal); each instance (one ``%%payi`` cell run, by
default) gets a score. ``pn.kpi("accepted", 1)`` inside a tracked cell scores the cell's
instance; ``pn.kpi("turns", add=1)`` adds to it.

Pay-i has no atomic increment (its SDK's helper reads the score, then writes score + n, so two
workers can both read 3 and both write 4). Here every change to one (use case, instance, KPI)
holds a per-key lock across its read and write, so increments from any number of threads or
tasks in this process all count. Processes that score the same instance at the same time can
still race; send their scores through one process (e.g. Dask's client) when that matters.

Every score set or read is kept in a ``ScoreBook``, which ``outcomes`` joins to the ledger.
"""

from __future__ import annotations

import builtins
import html
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import routes
from .calls import AnalyticsError, ClientFactory, call, use_case_name

KPI_TYPES = routes.KPI_TYPES
COLUMNS = ["name", "kpi_type", "goal", "description", "created", "updated"]
SCORE_COLUMNS = ["use_case_name", "use_case_id", "kpi_name", "score"]
Key = tuple[str, str, str]  # (use_case_name, use_case_id, kpi_name)
Instance = Callable[[], tuple[str | None, str | None]]


@dataclass(frozen=True)
class Kpi:
    """One KPI definition of a use case."""

    use_case_name: str
    name: str
    kpi_type: str
    goal: float
    description: str

    @classmethod
    def from_api(cls, use_case: str, data: Mapping[str, Any]) -> Kpi:
        return cls(
            use_case,
            data["name"],
            data.get("kpi_type") or "number",
            float(data.get("goal") or 0.0),
            data["description"],
        )

    def describe(self) -> str:
        return f"{self.use_case_name}/{self.name} ({self.kpi_type}, goal {self.goal:g}): {self.description}"

    def __repr__(self) -> str:
        return f"Kpi({self.describe()})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(self.describe())}</code>"


class ScoreBook:
    """The KPI scores this process set or read, per (use case, instance, KPI), with a lock per key."""

    def __init__(self) -> None:
        self._scores: dict[Key, float] = {}
        self._locks: dict[Key, threading.Lock] = {}
        self._guard = threading.Lock()
        self.version = 0

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def set(self, key: Key, score: float) -> None:
        with self._guard:
            self._scores[key] = score
            self.version += 1

    def get(self, key: Key) -> float | None:
        return self._scores.get(key)

    def items(self) -> list[tuple[Key, float]]:
        with self._guard:
            return list(self._scores.items())

    def frame(self) -> pd.DataFrame:
        """One row per known score: ``use_case_name``, ``use_case_id``, ``kpi_name``, ``score``."""
        with self._guard:
            rows = [(*key, score) for key, score in self._scores.items()]
        return pd.DataFrame(rows, columns=SCORE_COLUMNS).astype({"score": "float64"})

    def clear(self) -> None:
        with self._guard:
            self._scores.clear()
            self.version += 1


def _kpi_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnalyticsError(f"KPI name must be a non-empty string, got {value!r}")
    return value


def _score(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return routes.number("score", value)
    except ValueError as exc:
        raise AnalyticsError(f"{exc} (or True/False)") from None


class Kpis:
    """KPI definitions and instance scores on the configured Pay-i endpoint (or the sandbox)."""

    def __init__(self, client: ClientFactory, book: ScoreBook, instance: Instance) -> None:
        self._client = client
        self.book = book
        self._instance = instance

    # definitions -----------------------------------------------------------------------

    def all(self, use_case: str) -> list[Kpi]:
        use_case = use_case_name(use_case)
        items = call(self._client, f"list the KPIs of {use_case!r}", lambda c: c.run(routes.list_kpis(use_case)))
        return [Kpi.from_api(use_case, item) for item in items]

    def list(self, use_case: str) -> pd.DataFrame:
        """The use case's KPIs: name, type, goal, description, created, updated."""
        use_case = use_case_name(use_case)
        items = call(self._client, f"list the KPIs of {use_case!r}", lambda c: c.run(routes.list_kpis(use_case)))
        frame = pd.DataFrame(
            [
                {
                    "name": i["name"],
                    "kpi_type": i.get("kpi_type"),
                    "goal": i.get("goal"),
                    "description": i["description"],
                    "created": pd.to_datetime(i.get("created_timestamp"), utc=True),
                    "updated": pd.to_datetime(i.get("updated_timestamp"), utc=True),
                }
                for i in items
            ],
            columns=COLUMNS,
        )
        return frame.astype({"goal": "float64"})

    def create(self, use_case: str, name: str, *, type: str, goal: float, description: str | None = None) -> Kpi:
        """Define KPI ``name`` of ``use_case``: ``type`` one of boolean, number, percentage, likert5/7/10."""
        use_case, name = use_case_name(use_case), _kpi_name(name)
        if type not in KPI_TYPES:
            raise AnalyticsError(f"KPI type must be one of {', '.join(KPI_TYPES)}, got {type!r}")
        answer = call(
            self._client,
            f"create KPI {name!r} of {use_case!r}",
            lambda c: c.run(routes.create_kpi(use_case, name, type, goal, description or name)),
        )
        return Kpi.from_api(use_case, answer)

    def ensure(self, use_case: str, name: str, *, type: str, goal: float, description: str | None = None) -> bool:
        """Define the KPI unless the use case already has one of that name; True if this call defined it."""
        try:
            self.create(use_case, name, type=type, goal=goal, description=description)
        except AnalyticsError as exc:
            if exc.code == "kpi_already_exists":
                return False
            raise
        return True

    def get(self, use_case: str, name: str) -> Kpi:
        use_case, name = use_case_name(use_case), _kpi_name(name)
        answer = call(
            self._client, f"get KPI {name!r} of {use_case!r}", lambda c: c.run(routes.kpi("GET", use_case, name))
        )
        return Kpi.from_api(use_case, answer)

    def update(self, use_case: str, name: str, *, description: str | None = None, goal: float | None = None) -> Kpi:
        use_case, name = use_case_name(use_case), _kpi_name(name)
        answer = call(
            self._client,
            f"update KPI {name!r} of {use_case!r}",
            lambda c: c.run(routes.update_kpi(use_case, name, description, goal)),
        )
        return Kpi.from_api(use_case, answer)

    def delete(self, use_case: str, name: str) -> None:
        use_case, name = use_case_name(use_case), _kpi_name(name)
        call(
            self._client, f"delete KPI {name!r} of {use_case!r}", lambda c: c.run(routes.kpi("DELETE", use_case, name))
        )

    # scores ----------------------------------------------------------------------------

    def _key(self, name: str, use_case_name_: str | None, use_case_id: str | None) -> Key:
        name = _kpi_name(name)
        if use_case_name_ is None and use_case_id is None:
            use_case_name_, use_case_id = self._instance()
            if not use_case_name_ or not use_case_id:
                raise AnalyticsError(
                    "no use case instance to score: call pn.kpi inside a tracked cell (%%payi --use-case NAME) "
                    "or pass use_case_name= and use_case_id="
                )
        elif not use_case_name_ or not isinstance(use_case_id, str) or not use_case_id:
            raise AnalyticsError("pass both use_case_name= and use_case_id= (or neither, inside a tracked cell)")
        return (use_case_name(use_case_name_), use_case_id, name)

    def score(
        self, name: str, value: float | bool, *, use_case_name: str | None = None, use_case_id: str | None = None
    ) -> float:
        """Set KPI ``name`` of the current (or given) use case instance to ``value``; returns it."""
        key = self._key(name, use_case_name, use_case_id)
        value = _score(value)
        with self.book.lock(key):
            self._put(key, value)
        return value

    def increment(
        self, name: str, by: float = 1, *, use_case_name: str | None = None, use_case_id: str | None = None
    ) -> float:
        """Add ``by`` to the instance's score (absent counts as 0) without losing concurrent increments here."""
        key = self._key(name, use_case_name, use_case_id)
        by = _score(by)
        with self.book.lock(key):
            current = self._read(key)
            return self._put(key, (current or 0.0) + by)

    def _put(self, key: Key, value: float) -> float:
        uc, uid, name = key
        call(self._client, f"score KPI {name!r} of {uc!r}", lambda c: c.run(routes.score_kpi(uc, uid, name, value)))
        self.book.set(key, value)
        return value

    def _read(self, key: Key) -> float | None:
        uc, uid, name = key
        items = call(self._client, f"read KPI {name!r} of {uc!r}", lambda c: c.run(routes.instance_kpis(uc, uid, name)))
        for item in items:
            if item.get("kpi_name") == name and item.get("score") is not None:
                self.book.set(key, float(item["score"]))
                return float(item["score"])
        return None

    def fetch(self, instances: Iterable[tuple[str, str]]) -> pd.DataFrame:
        """Read every KPI score Pay-i has for these (use case, instance id) pairs into the book; returns them."""
        rows = []
        for uc, uid in instances:
            try:
                items = self._instance_scores(uc, uid)
            except AnalyticsError as exc:
                if exc.code in ("use_case_not_found", "use_case_instance_not_found"):
                    continue  # a use case nobody defined KPIs for
                raise
            for item in items:
                if item.get("score") is not None:
                    self.book.set((uc, uid, item["kpi_name"]), float(item["score"]))
                    rows.append((uc, uid, item["kpi_name"], float(item["score"])))
        return pd.DataFrame(rows, columns=SCORE_COLUMNS).astype({"score": "float64"})

    def _instance_scores(self, uc: str, uid: str) -> builtins.list[dict[str, Any]]:
        return call(self._client, f"read the KPIs of {uc!r}", lambda c: c.run(routes.instance_kpis(uc, uid)))

    def scores(self) -> pd.DataFrame:
        """Every score this process set or read: ``use_case_name``, ``use_case_id``, ``kpi_name``, ``score``."""
        return self.book.frame()

    def __repr__(self) -> str:
        return (
            "pn.kpis: .list(use_case) .create(use_case, name, type=, goal=) .get .update .delete "
            ".score(name, value) .increment(name, by=1) .scores() — pn.kpi(name, value) scores the cell's instance"
        )
