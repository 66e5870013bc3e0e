"""pn.kpi / pn.annotate / pn.outcomes / pn.report and use_case_not_found handling, in a real session.

Real OpenAI SDK calls to the emulator, captured and ingested into a plain or a strict
(definitions required) sandbox; Pay-i's SDK reads back what the sandbox holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from openai import OpenAI
from payi import NotFoundError, Payi

import payi_notebook as pn
import payi_notebook.sandbox as sandbox_pkg
from payi_notebook.analytics.annotate import Annotator

MESSAGES = [{"role": "user", "content": "Summarise: the quarterly numbers are in."}]


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "strict"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[sandbox_pkg.Sandbox]:
    with sandbox_pkg.start(strict_use_cases=request.param) as running:
        yield running


@pytest.fixture
def strict(sandbox: sandbox_pkg.Sandbox, request: pytest.FixtureRequest) -> bool:
    return "strict" in request.node.callspec.id


@pytest.fixture
def sdk(sandbox_env: sandbox_pkg.Sandbox) -> Iterator[Payi]:
    client = Payi(api_key=sandbox_env.api_key, base_url=sandbox_env.base_url, max_retries=0)
    yield client
    client.close()


@pytest.fixture
def openai_client(sandbox_env: sandbox_pkg.Sandbox) -> Iterator[OpenAI]:
    client = OpenAI(base_url=f"{sandbox_env.provider_url}/v1", api_key="emulated", max_retries=0)
    yield client
    client.close()


def _name() -> str:
    return f"uc-{uuid.uuid4().hex[:8]}"


def _ask(client: OpenAI, times: int = 1) -> None:
    for _ in range(times):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]


def test_an_undefined_use_case_is_defined_once_and_its_calls_sent(
    openai_client: OpenAI, sdk: Payi, sandbox_env: sandbox_pkg.Sandbox, strict: bool
) -> None:
    name = _name()
    with pn.track(use_case_name=name):
        _ask(openai_client, 2)
    report = pn.flush(60)
    assert report.failed == 0 and report.pending == 0, report
    rows = pn.ledger().df
    rows = rows[rows["use_case_name"] == name]
    assert list(rows["status"]) == ["sent", "sent"] and rows["error"].isna().all()
    stored = [e for e in sandbox_env.events() if (e["context"] or {}).get("use_case_name") == name]
    assert len(stored) == 2  # once each, none doubled by the retry
    if strict:  # Pay-i asked for a definition: there is exactly one, ours
        assert sdk.use_cases.definitions.retrieve(name).description.startswith("Defined by payi_notebook")
    else:  # nothing asked for one: none was made
        with pytest.raises(NotFoundError):
            sdk.use_cases.definitions.retrieve(name)


def test_a_backlog_sent_in_bulk_for_an_undefined_use_case_is_sent_once(
    openai_client: OpenAI, sandbox_env: sandbox_pkg.Sandbox
) -> None:
    name = _name()
    with pn.track(use_case_name=name):
        _ask(openai_client, 60)  # back to back: the flusher holds back, then sends the backlog in bulk
    report = pn.flush(120)
    assert report.failed == 0 and report.pending == 0, report
    stored = [e for e in sandbox_env.events() if (e["context"] or {}).get("use_case_name") == name]
    assert len(stored) == 60 and len({e["provider_response_id"] for e in stored}) == 60


def test_with_creation_off_the_rows_fail_saying_how_to_define_it(
    openai_client: OpenAI, sdk: Payi, strict: bool
) -> None:
    if not strict:
        pytest.skip("only a Pay-i that requires definitions refuses an undefined use case")
    pn.configure(create_use_cases=False)
    name = _name()
    with pn.track(use_case_name=name):
        _ask(openai_client)
    report = pn.flush(60)
    assert report.failed == 1
    (error,) = pn.ledger().df.query("use_case_name == @name")["error"]
    assert "use_case_not_found" in error
    assert error.endswith(f"(define it with pn.use_cases.create({name!r}, description=...), then run the cell again)")
    with pytest.raises(NotFoundError):
        sdk.use_cases.definitions.retrieve(name)


def test_cost_per_accepted_answer_by_version_is_one_groupby(openai_client: OpenAI, sdk: Payi) -> None:
    name = _name()
    pn.use_cases.create(name, "support answers")
    pn.kpis.create(name, "accepted", type="boolean", goal=0.8)
    accepted = {1: [True, False, False], 2: [True, True, False]}
    for version, verdicts in accepted.items():
        for verdict in verdicts:
            with pn.track(use_case_name=name, use_case_version=version):  # one instance per block
                _ask(openai_client, version)  # version 2 makes two calls per answer
                pn.kpi("accepted", verdict)
    pn.flush(60)

    df = pn.ledger().df
    mine = df[df["use_case_name"] == name]
    assert "kpi_accepted" in df.columns and len(mine) == 9
    outcomes = pn.outcomes()
    outcomes = outcomes[outcomes["use_case_name"] == name]
    assert len(outcomes) == 6 and list(outcomes["calls"]) == [1, 1, 1, 2, 2, 2]
    by_version = outcomes.groupby("use_case_version")[["cost_usd", "kpi_accepted"]].sum()
    per_accepted = by_version["cost_usd"] / by_version["kpi_accepted"]
    for version, verdicts in accepted.items():
        cost = mine.loc[mine["use_case_version"] == version, "cost_usd"].sum()
        assert per_accepted[version] == pytest.approx(cost / sum(verdicts))
    # the scores the ledger joined are the ones Pay-i holds for each instance
    for row in outcomes.itertuples():
        (kpi,) = sdk.use_cases.kpis.list(row.use_case_id, use_case_name=name)
        assert kpi.score == row.kpi_accepted
    # and a fresh process reading them back from Pay-i gets the same join
    pn.kpis.book.clear()
    assert "kpi_accepted" not in pn.ledger().df.columns
    fetched = pn.outcomes(fetch=True)
    assert list(fetched.loc[fetched["use_case_name"] == name, "kpi_accepted"]) == list(outcomes["kpi_accepted"])


def test_kpi_increments_from_a_cells_thread_pool_all_count(openai_client: OpenAI, sdk: Payi) -> None:
    name = _name()
    pn.use_cases.create(name, "tool calls")
    pn.kpis.create(name, "tool_calls", type="number", goal=5)
    with pn.track(use_case_name=name) as scope, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: pn.kpi("tool_calls", add=1), range(24)))
    (score,) = sdk.use_cases.kpis.list(scope.context.use_case_id, use_case_name=name)
    assert score.score == 24.0


def test_annotate_sets_properties_at_payi_and_in_the_ledger(
    openai_client: OpenAI, sandbox_env: sandbox_pkg.Sandbox
) -> None:
    name = _name()
    pn.use_cases.create(name, "evaluated")
    with pn.track(use_case_name=name, properties={"prompt": "v1"}):
        _ask(openai_client, 2)
    first, second = pn.ledger().df.query("use_case_name == @name")["event_id"]
    assert pn.annotate(first, verdict="good") == {"prompt": "v1", "verdict": "good"}  # sends what is pending first
    rows = pn.ledger().df.set_index("event_id")
    assert rows.loc[first, "properties"] == {"prompt": "v1", "verdict": "good"}
    assert rows.loc[second, "properties"] == {"prompt": "v1"}
    by_request = {e["request_id"]: e for e in sandbox_env.events()}
    assert by_request[rows.loc[first, "payi_request_id"]]["context"]["properties"] == {
        "prompt": "v1",
        "verdict": "good",
    }

    # a row Pay-i knows only by its provider response id (as bulk-sent rows are, until their lookup)
    row = pn.ledger().df.query("event_id == @second").copy()
    row["payi_request_id"] = pd.NA
    by_provider = Annotator(pn._payi_client, lambda: row, pn.flush, pn._notes)
    assert by_provider(second, verdict="bad", prompt=None) == {"verdict": "bad"}
    (stored,) = [e for e in sandbox_env.events() if e["provider_response_id"] == row["provider_response_id"].iloc[0]]
    assert stored["context"]["properties"] == {"verdict": "bad"}
    assert pn.ledger().df.set_index("event_id").loc[second, "properties"] == {"verdict": "bad"}

    with pytest.raises(pn.AnalyticsError, match="no ledger row has the id 'nope'"):
        pn.annotate("nope", verdict="good")
    with pytest.raises(pn.AnalyticsError, match="needs at least one property"):
        pn.annotate(first)


def test_report_rows_are_the_ledgers_calls(openai_client: OpenAI) -> None:
    name = _name()
    pn.use_cases.create(name, "reported")
    with pn.track(use_case_name=name, use_case_version=1):
        _ask(openai_client, 3)
    pn.flush(60)
    report = pn.report("requests", start=pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1))
    mine = report[report["use_case_name"] == name]
    ledger = pn.ledger().df.query("use_case_name == @name")
    assert sorted(mine["request_id"]) == sorted(ledger["payi_request_id"])
    assert mine["total_cost"].sum() == pytest.approx(ledger["payi_cost_usd"].sum())
