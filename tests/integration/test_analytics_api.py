"""Use cases, KPIs, request properties and reports: our client and Pay-i's official SDK against the sandbox.

Each call goes through both where both exist, and they must agree; every request either
sends and every answer the sandbox gives are checked against the shared spec. Runs against a
plain sandbox and one in strict mode (definitions required).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from payi import NotFoundError, Payi

import payi_notebook.sandbox as sandbox_pkg
from payi_notebook.analytics import routes
from payi_notebook.analytics.calls import AnalyticsError
from payi_notebook.analytics.kpis import Kpis, ScoreBook
from payi_notebook.analytics.reports import Reports
from payi_notebook.analytics.use_cases import UseCases
from payi_notebook.client import PayiClient

from support.spec_recorder import SpecRecorder


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "strict"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[sandbox_pkg.Sandbox]:
    with sandbox_pkg.start(strict_use_cases=request.param) as running:
        yield running


@pytest.fixture
def recorder() -> SpecRecorder:
    return SpecRecorder()


@pytest.fixture
def ours(sandbox: sandbox_pkg.Sandbox, recorder: SpecRecorder) -> Iterator[Any]:
    """Our client factory, as ``pn`` has it: one long-lived client (spec-checked here)."""
    client = recorder.client(sandbox.base_url, sandbox.api_key)
    yield lambda: client
    client.close()


@pytest.fixture
def sdk(sandbox: sandbox_pkg.Sandbox, recorder: SpecRecorder) -> Iterator[Payi]:
    client = Payi(api_key=sandbox.api_key, base_url=sandbox.base_url, http_client=recorder.sdk_http(), max_retries=0)
    yield client
    client.close()


def _name(prefix: str = "uc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_use_case_definitions_agree_with_the_sdk(ours: Any, sdk: Payi, recorder: SpecRecorder) -> None:
    use_cases = UseCases(ours)
    name = _name()
    made = use_cases.create(name, "summaries for the weekly report", logging_enabled=False)
    seen = sdk.use_cases.definitions.retrieve(name)
    assert (
        (seen.name, seen.description, seen.type_version, seen.logging_enabled)
        == (
            made.name,
            made.description,
            made.version,
            made.logging_enabled,
        )
        == (name, "summaries for the weekly report", 1, False)
    )

    other = _name()
    sdk.use_cases.definitions.create(name=other, description="made by the SDK")
    assert use_cases.get(other).description == "made by the SDK"
    listed = use_cases.list()
    assert {name, other} <= set(listed["name"])
    assert set(listed["name"]) == {d.name for d in sdk.use_cases.definitions.list()}

    assert use_cases.increment_version(name) == 2
    assert sdk.use_cases.definitions.version.increment(use_case_name=name).type_version == 3
    assert use_cases.get(name).version == 3

    assert use_cases.update(name, description="v3 prompt").description == "v3 prompt"
    assert sdk.use_cases.definitions.retrieve(name).description == "v3 prompt"

    with_limit = use_cases.set_limit(name, 2.5, type="allow", threshold=0.8)
    assert with_limit.limit_config == {"max": 2.5, "limit_type": "allow", "threshold": 0.8}
    sdk_limit = sdk.use_cases.definitions.retrieve(name).limit_config
    assert sdk_limit is not None and (sdk_limit.max, sdk_limit.limit_type, sdk_limit.threshold) == (2.5, "allow", 0.8)
    instance = use_cases.new_instance(name)
    assert instance["limit_id"] and instance["type_version"] == 3  # each new instance gets its own limit
    assert sdk.limits.retrieve(instance["limit_id"]).limit.max == 2.5
    assert use_cases.remove_limit(name).limit_config is None
    assert sdk.use_cases.definitions.retrieve(name).limit_config is None

    use_cases.delete(name)
    with pytest.raises(NotFoundError):
        sdk.use_cases.definitions.retrieve(name)
    with pytest.raises(AnalyticsError, match=r"use_case_not_found; define it with pn\.use_cases\.create"):
        use_cases.get(name)
    assert ("POST", "/api/v1/use_cases/definitions/{use_case_name}/increment_version") in recorder.routes()


def test_bad_arguments_are_refused_before_anything_is_sent(ours: Any, recorder: SpecRecorder) -> None:
    use_cases, kpis = UseCases(ours), Kpis(ours, ScoreBook(), lambda: (None, None))
    with pytest.raises(AnalyticsError, match="use case name 'two words' is invalid"):
        use_cases.create("two words", "x")
    with pytest.raises(AnalyticsError, match="max must be a positive amount"):
        use_cases.set_limit("ok-name", -1)
    with pytest.raises(AnalyticsError, match="KPI type must be one of boolean, number"):
        kpis.create("ok-name", "accepted", type="yes/no", goal=1)
    with pytest.raises(AnalyticsError, match=r"call pn\.kpi inside a tracked cell"):
        kpis.score("accepted", 1)
    with pytest.raises(AnalyticsError, match="score must be a finite number"):
        kpis.score("accepted", float("nan"), use_case_name="ok-name", use_case_id="abc")
    with pytest.raises(AnalyticsError, match="start .* must be before end"):
        Reports(ours)("requests", "2026-02-01", "2026-01-01")
    with pytest.raises(AnalyticsError, match="is not a date"):
        Reports(ours)("requests", "last tuesday")
    assert recorder.seen == []


def test_kpi_definitions_and_scores_agree_with_the_sdk(ours: Any, sdk: Payi) -> None:
    use_cases, book = UseCases(ours), ScoreBook()
    name = _name()
    use_cases.create(name, "answers")
    instance = use_cases.new_instance(name)["use_case_id"]
    kpis = Kpis(ours, book, lambda: (name, instance))

    made = kpis.create(name, "accepted", type="boolean", goal=0.8, description="the user kept the answer")
    sdk_kpi = sdk.use_cases.definitions.kpis.retrieve("accepted", use_case_name=name)
    assert (sdk_kpi.kpi_type, sdk_kpi.goal, sdk_kpi.description) == (made.kpi_type, made.goal, made.description)
    sdk.use_cases.definitions.kpis.create(name, name="turns", description="turns", kpi_type="number", goal=3)
    assert list(kpis.list(name)["name"]) == ["accepted", "turns"]
    assert kpis.update(name, "turns", goal=2).goal == 2.0
    assert sdk.use_cases.definitions.kpis.retrieve("turns", use_case_name=name).goal == 2.0

    assert kpis.score("accepted", True) == 1.0  # the current instance (a tracked cell's, in pn.kpi)
    scores = {k.kpi_name: k.score for k in sdk.use_cases.kpis.list(instance, use_case_name=name)}
    assert scores == {"accepted": 1.0}
    sdk.use_cases.kpis.update("turns", use_case_name=name, use_case_id=instance, score=2.0)
    assert kpis.increment("turns", 3) == 5.0  # read-then-write, reading what the SDK wrote
    assert {k.kpi_name: k.score for k in sdk.use_cases.kpis.list(instance, use_case_name=name)} == {
        "accepted": 1.0,
        "turns": 5.0,
    }
    fetched = Kpis(ours, ScoreBook(), lambda: (None, None)).fetch([(name, instance)])
    assert dict(zip(fetched["kpi_name"], fetched["score"])) == {"accepted": 1.0, "turns": 5.0}

    with pytest.raises(AnalyticsError, match="invalid_kpi_score"):
        kpis.score("accepted", 0.5)  # boolean: 0 or 1
    with pytest.raises(AnalyticsError, match=r"kpi_not_found; define it with pn\.kpis\.create"):
        kpis.score("unknown-kpi", 1)
    kpis.delete(name, "turns")
    assert [k.name for k in sdk.use_cases.definitions.kpis.list(name)] == ["accepted"]


def test_concurrent_increments_from_threads_all_count(ours: Any, sdk: Payi) -> None:
    """Pay-i's SDK helper reads then writes; ours holds a per-instance lock across both."""
    use_cases = UseCases(ours)
    name = _name()
    use_cases.create(name, "counted")
    instance = use_cases.new_instance(name)["use_case_id"]
    kpis = Kpis(ours, ScoreBook(), lambda: (name, instance))
    kpis.create(name, "turns", type="number", goal=10)
    threads, each = 8, 5
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(each):
            kpis.increment("turns")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    (final,) = [k.score for k in sdk.use_cases.kpis.list(instance, use_case_name=name)]
    assert final == threads * each


def test_request_properties_by_request_id_and_by_provider_id_agree_with_the_sdk(
    sandbox: sandbox_pkg.Sandbox, ours: Any, sdk: Payi
) -> None:
    name = _name()
    UseCases(ours).create(name, "annotated")
    pid = f"chatcmpl-{uuid.uuid4().hex}"
    ingested = sdk.ingest.units(
        category="system.openai",
        resource="gpt-4o-mini",
        units={"text": {"input": 100, "output": 20}},
        provider_response_id=pid,
        use_case_name=name,
        properties={"prompt": "v1"},
    )
    client: PayiClient = ours()
    assert client.run(routes.request_properties(ingested.request_id, {"verdict": "good"}))["request_id"]
    sdk.requests.response_id.properties.update(pid, category="system.openai", properties={"reviewer": "ana"})
    client.run(routes.provider_properties("system.openai", pid, {"prompt": None}))
    (stored,) = [e for e in sandbox.events() if e["provider_response_id"] == pid]
    assert stored["context"]["properties"] == {"verdict": "good", "reviewer": "ana"}  # merged; None removed a key
    with pytest.raises(NotFoundError):
        sdk.requests.request_id.properties.update("no-such-request", properties={"a": "b"})


def test_report_is_a_dataframe_over_a_half_open_window(
    sandbox: sandbox_pkg.Sandbox, ours: Any, sdk: Payi, recorder: SpecRecorder
) -> None:
    name = _name()
    UseCases(ours).create(name, "reported")
    for index in range(3):
        sdk.ingest.units(
            category="system.openai",
            resource="gpt-4o-mini",
            units={"text": {"input": 1000 * (index + 1), "output": 10}},
            provider_response_id=f"chatcmpl-{uuid.uuid4().hex}",
            use_case_name=name,
            use_case_version=1,
        )
    events = [e for e in sandbox.events() if (e["context"] or {}).get("use_case_name") == name]
    frame = Reports(ours)("requests")
    mine = frame[frame["use_case_name"] == name]
    assert sorted(mine["request_id"]) == sorted(e["request_id"] for e in events)
    assert mine["total_cost"].sum() == pytest.approx(sum(e["cost"]["total"] for e in events))
    assert str(mine["event_timestamp"].dtype).startswith("datetime64") and mine["event_timestamp"].dt.tz is not None

    first, last = events[0]["event_timestamp"], events[-1]["event_timestamp"]
    window = Reports(ours)("requests", start=first, end=last)  # from inclusive, to exclusive
    in_window = set(window.loc[window["use_case_name"] == name, "request_id"])
    assert events[0]["request_id"] in in_window and events[-1]["request_id"] not in in_window

    raw = httpx.get(
        f"{sandbox.base_url}/api/v1/reports/requests",
        params={"from": first},
        headers={"xProxy-api-key": sandbox.api_key},
    )
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/csv")
    with pytest.raises(
        AnalyticsError, match="report 'nope' not found; the sandbox's reports are: kpi_scores, requests"
    ):
        Reports(ours)("nope")
    assert ("GET", "/api/v1/reports/{report_id}") in recorder.routes()
