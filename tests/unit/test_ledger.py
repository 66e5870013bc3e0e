"""The ledger: rows from real UsageEvents, updates by RowRef, the cached DataFrame, files."""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import threading

import numpy as np
import pandas as pd
import pytest

from payi_notebook.context import Context, derive
from payi_notebook.events import STATUSES, UsageEvent
from payi_notebook.ledger import (
    COLUMNS,
    FRAME_COLUMNS,
    UPDATABLE,
    Ledger,
    RowRef,
    Totals,
    UnknownColumnError,
    read_csv,
    read_parquet,
    to_parquet,
)
from payi_notebook.ledger.build import distinct as _distinct
from payi_notebook.ledger.build import units_column as _units_column
from payi_notebook.units import TokenCounts, token_counts, units_for, units_from_tokens

from support import events as factory


def _compact_units(anthropic: bool, *tokens: int):
    """units_from_tokens for a provider of one layout (what units_column vectorises)."""
    return units_from_tokens("anthropic" if anthropic else "openai", TokenCounts(*tokens))

CONTRACT = (
    "event_id execution_count cell_id timestamp mode provider category resource provider_response_id "
    "operation streaming input_tokens output_tokens cache_read_tokens cache_write_tokens reasoning_tokens "
    "units est_cost_usd payi_cost_usd cost_usd cost_source latency_ms ttft_ms http_status use_case_name "
    "use_case_id use_case_step user_id account_name limit_ids properties payi_request_id limit_states status error"
).split()

DTYPES = {
    "event_id": "str",
    "execution_count": "Int64",
    "timestamp": "datetime64[us, UTC]",
    "provider_response_id": "str",
    "streaming": "bool",
    "units": "object",
    "est_cost_usd": "float64",
    "payi_cost_usd": "float64",
    "cost_usd": "float64",
    "latency_ms": "float64",
    "ttft_ms": "float64",
    "http_status": "Int64",
    "limit_ids": "object",
    "properties": "object",
    "payi_request_id": "str",
    "limit_states": "object",
    "error": "str",
    "partial": "bool",
    "input_tokens_estimated": "bool",
    "use_case_version": "Int64",
    "xproxy_json": "str",
    **dict.fromkeys(
        ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"], "int64"
    ),
    **dict.fromkeys(
        "cell_id mode provider category resource operation cost_source use_case_name use_case_id "
        "use_case_step user_id account_name status provider_uri worker deployment".split(),
        "category",
    ),
}

CTX = derive(
    Context(),
    use_case_name="summarize",
    use_case_id="uc-1",
    use_case_version=3,
    use_case_step="draft",
    user_id="ana",
    account_name="acme",
    limit_ids=["team-q4", "ana-daily"],
    properties={"experiment": "a"},
)


def openai_event(prompt: int = 120, completion: int = 30, cached: int = 0, reasoning: int = 0, **kw) -> UsageEvent:
    """A Responses API call in cell 7 under ``CTX``, with an estimated cost."""
    fields = dict(
        latency_ms=250.0,
        est_cost_usd=0.002,
        context=CTX,
        execution_count=7,
        cell_id="cell-a",
        provider_uri="https://api.openai.com/v1/responses",
    )
    return factory.openai_event(prompt, completion, cached, reasoning, operation="responses", **{**fields, **kw})


def anthropic_event(usage: dict, **kw) -> UsageEvent:
    """A streamed Messages call with this raw ``usage``, no HTTP status or URL recorded."""
    fields = dict(resource="claude-sonnet-4-5", streaming=True, ttft_ms=80.5, latency_ms=900.0, http_status=None, provider_uri=None)
    return factory.usage_event("anthropic", "messages", usage, **{**fields, **kw})


def test_columns_and_dtypes_match_for_empty_and_filled_ledgers():
    ledger = Ledger()
    empty = ledger.df
    assert list(COLUMNS[: len(CONTRACT)]) == CONTRACT
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0
    assert {c: str(t) for c, t in empty.dtypes.items()} == DTYPES

    ledger.append(openai_event())
    ledger.append(anthropic_event({"input_tokens": 10, "output_tokens": 5}, context=Context()))
    filled = ledger.df
    assert list(filled.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in filled.dtypes.items()} == DTYPES
    assert str(filled["timestamp"].dt.tz) == "UTC"


def test_values_round_trip_from_events():
    ledger = Ledger()
    event = openai_event(prompt=5000, completion=900, cached=1024, reasoning=300, timestamp=1_767_000_000.123456)
    ref = ledger.append(event)
    assert ref == RowRef(0, 0)
    row = ledger.df.iloc[0]
    assert row["event_id"] == event.event_id
    assert row["timestamp"] == pd.Timestamp("2025-12-29 09:20:00.123456", tz="UTC")
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["reasoning_tokens"]) == (
        5000,
        900,
        1024,
        300,
    )
    assert row["units"] == event.units == {
        "text": {"input": 3976, "output": 600},
        "text_cache_read": {"input": 1024},
        "reasoning": {"output": 300},
    }
    assert (row["mode"], row["provider"], row["category"], row["resource"], row["operation"]) == (
        "telemetry",
        "openai",
        "system.openai",
        "gpt-4.1",
        "responses",
    )
    assert row["provider_response_id"] == event.provider_response_id
    assert (row["execution_count"], row["cell_id"], row["http_status"], row["latency_ms"]) == (7, "cell-a", 200, 250.0)
    assert math.isnan(row["ttft_ms"]) and not row["streaming"] and not row["partial"]
    assert (row["use_case_name"], row["use_case_id"], row["use_case_version"], row["use_case_step"]) == (
        "summarize",
        "uc-1",
        3,
        "draft",
    )
    assert (row["user_id"], row["account_name"]) == ("ana", "acme")
    assert row["limit_ids"] == ["team-q4", "ana-daily"] and type(row["limit_ids"]) is list
    assert row["properties"] == {"experiment": "a"} and type(row["properties"]) is dict
    assert row["limit_states"] == {} and row["status"] == "pending"
    assert pd.isna(row["payi_request_id"]) and pd.isna(row["error"]) and pd.isna(row["xproxy_json"])
    assert row["provider_uri"] == "https://api.openai.com/v1/responses"


def test_missing_context_and_optional_fields_are_null():
    ledger = Ledger()
    ledger.append(UsageEvent(provider="openai", category="system.openai", operation="embeddings", status="failed"))
    row = ledger.df.iloc[0]
    for name in ("resource", "cell_id", "use_case_name", "user_id", "account_name", "provider_uri", "http_status"):
        assert pd.isna(row[name]), name
    assert pd.isna(row["execution_count"]) and pd.isna(row["use_case_version"]) and pd.isna(row["provider_response_id"])
    assert row["units"] == {} and row["limit_ids"] == [] and row["properties"] == {}
    assert row["status"] == "failed" and row["cost_source"] == "unknown" and math.isnan(row["cost_usd"])


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 1200, "output_tokens": 80, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 200},
        {"input_tokens": 250_000, "output_tokens": 10, "cache_read_input_tokens": 5},  # large context
        {  # 1-hour cache writes: not reproducible from token counts
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 4096,
            "cache_creation": {"ephemeral_5m_input_tokens": 96, "ephemeral_1h_input_tokens": 4000},
        },
        {"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 2}},
    ],
)
def test_units_round_trip_including_maps_token_counts_cannot_rebuild(usage):
    ledger = Ledger()
    event = anthropic_event(usage)
    ledger.append(event)
    ledger.append(openai_event())
    units = ledger.df["units"].tolist()
    assert units[0] == event.units
    assert units[1] == {"text": {"input": 120, "output": 30}}


def test_units_map_is_a_snapshot_and_odd_maps_survive_mutation_of_the_event():
    ledger = Ledger()
    custom = {"text": {"input": 1, "output": 2}, "image": {"input": 3}}
    event = openai_event(units=custom, tokens=TokenCounts(1, 2))
    ledger.append(event)
    custom["image"]["input"] = 99
    assert ledger.df["units"][0] == {"text": {"input": 1, "output": 2}, "image": {"input": 3}}


def test_compact_units_agree_with_units_from_tokens_for_what_capture_produces():
    values = (0, 7, 1500, 199_999, 200_000)
    for prompt, completion, cached, reasoning in itertools.product(values, values, (0, 3, 1024), (0, 5)):
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        tokens = token_counts(units_for("openai", usage))
        assert _compact_units(False, *tokens) == units_from_tokens("openai", tokens) == units_for("openai", usage)
    for fresh, out, read, write in itertools.product(values, (0, 9), (0, 3, 150_000), (0, 11, 60_000)):
        usage = {
            "input_tokens": fresh,
            "output_tokens": out,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }
        tokens = token_counts(units_for("anthropic", usage))
        assert _compact_units(True, *tokens) == units_from_tokens("anthropic", tokens)
        assert _compact_units(True, *tokens) == units_for("anthropic", usage)


@pytest.mark.parametrize(
    "event_id", ["ABCDEF0123456789ABCDEF0123456789", "not-a-uuid", "0" * 32, "a" * 33, "g" * 32, "a b" * 8, ""]
)
def test_event_ids_that_are_not_lowercase_uuid_hex_are_kept_verbatim(event_id):
    ledger = Ledger()
    ledger.append(openai_event(event_id=event_id))
    normal = ledger.append(openai_event())
    ids = ledger.df["event_id"].tolist()
    assert ids[0] == event_id and len(ids[normal.index]) == 32


@pytest.mark.parametrize(
    "payi, est, cost, source",
    [
        (0.5, 0.4, 0.5, "payi"),
        (None, 0.4, 0.4, "estimate"),
        (None, None, math.nan, "unknown"),
        (None, math.nan, math.nan, "unknown"),
        (0.0, math.nan, 0.0, "payi"),
    ],
)
def test_cost_usd_prefers_payi_then_estimate(payi, est, cost, source):
    ledger = Ledger()
    ledger.append(openai_event(payi_cost_usd=payi, est_cost_usd=est))
    row = ledger.df.iloc[0]
    assert row["cost_source"] == source
    assert (math.isnan(row["cost_usd"]) and math.isnan(cost)) or row["cost_usd"] == cost


def test_update_by_ref_changes_only_that_row():
    ledger = Ledger()
    refs = [ledger.append(openai_event()) for _ in range(3)]
    assert ledger.update(
        refs[1],
        status="sent",
        payi_cost_usd=0.0125,
        est_cost_usd=0.01,
        payi_request_id="req-77",
        limit_states={"team-q4": "exceeded"},
        http_status=201,
        provider_response_id="resp_replaced",
        error="late warning",
    )
    df = ledger.df
    row = df.iloc[1]
    assert (row["status"], row["payi_cost_usd"], row["est_cost_usd"], row["cost_usd"], row["cost_source"]) == (
        "sent",
        0.0125,
        0.01,
        0.0125,
        "payi",
    )
    assert (row["payi_request_id"], row["http_status"], row["provider_response_id"], row["error"]) == (
        "req-77",
        201,
        "resp_replaced",
        "late warning",
    )
    assert row["limit_states"] == {"team-q4": "exceeded"}
    assert (df["status"] == "pending").sum() == 2 and df["payi_request_id"].isna().sum() == 2

    assert ledger.update(refs[1], error=None, limit_states=None, http_status=None, payi_cost_usd=None)
    row = ledger.df.iloc[1]
    assert pd.isna(row["error"]) and row["limit_states"] == {} and pd.isna(row["http_status"])
    assert row["cost_source"] == "estimate"


def test_xproxy_result_fills_request_id_and_limit_states_unless_given():
    ledger = Ledger()
    a, b = ledger.append(openai_event()), ledger.append(openai_event())
    result = {"request_id": "777", "limits": {"team-q4": {"state": "overrun"}, "x": {"nostate": 1}}, "cost": {}}
    assert ledger.update(a, xproxy_result=result)
    assert ledger.update(b, xproxy_result=result, payi_request_id="explicit", limit_states={"team-q4": "ok"})
    df = ledger.df
    assert ledger.xproxy_result(a) == result and ledger.xproxy_result(a) is not result
    assert json.loads(df["xproxy_json"][0]) == result
    assert (df["payi_request_id"][0], df["limit_states"][0]) == ("777", {"team-q4": "overrun"})
    assert (df["payi_request_id"][1], df["limit_states"][1]) == ("explicit", {"team-q4": "ok"})


def test_proxy_event_carrying_xproxy_result_starts_with_its_fields():
    ledger = Ledger()
    result = {"request_id": "r-1", "limits": {"team-q4": {"state": "blocked"}}}
    ref = ledger.append(openai_event(mode="proxy", status="blocked", xproxy_result=result, http_status=400))
    row = ledger.df.iloc[0]
    assert (row["mode"], row["status"], row["payi_request_id"], row["limit_states"]) == (
        "proxy",
        "blocked",
        "r-1",
        {"team-q4": "blocked"},
    )
    assert ledger.xproxy_result(ref) == result
    assert ledger.update(ref, xproxy_result=None) and ledger.xproxy_result(ref) is None
    assert ledger.df["payi_request_id"][0] == "r-1"


def test_bad_updates_raise_and_change_nothing():
    ledger = Ledger()
    ref = ledger.append(openai_event())
    version = ledger.version
    with pytest.raises(TypeError, match="unknown field.*'colour'"):
        ledger.update(ref, status="sent", colour="red")
    with pytest.raises(ValueError, match="status must be one of"):
        ledger.update(ref, status="done")
    with pytest.raises(TypeError, match="payi_cost_usd must be a number"):
        ledger.update(ref, payi_cost_usd="0.1")
    with pytest.raises(TypeError, match="limit_states must be a dict"):
        ledger.update(ref, limit_states={"a": 1})
    with pytest.raises(ValueError, match="http_status"):
        ledger.update(ref, http_status=70000)
    with pytest.raises(TypeError, match="xproxy_result must be JSON data"):
        ledger.update(ref, xproxy_result={"request_id": "1", "odd": {1, 2}})
    assert ledger.version == version and ledger.df["status"][0] == "pending"
    assert set(UPDATABLE) >= {"status", "xproxy_result", "limit_states"}


def test_malformed_events_are_stored_as_failed_rows_naming_the_problem():
    ledger = Ledger()
    ledger.append(openai_event())
    bads = (
        openai_event(status="done"),
        openai_event(http_status=10**6),
        openai_event(latency_ms="fast"),
        openai_event(tokens=(1, 2)),
        openai_event(provider_response_id=42),
        openai_event(event_id=None),
        openai_event(xproxy_result=["not", "a", "dict"]),
        openai_event(execution_count="7"),
        openai_event(resource=["gpt"]),
        openai_event(streaming=None),
        openai_event(context=None),
        openai_event(context=Context(use_case_version="2")),
        openai_event(context=Context(limit_ids=(1,))),
        openai_event(context=Context(use_case_name="u", use_case_version=10**20)),
        openai_event(execution_count=2**70),
    )
    refs = [ledger.append(bad) for bad in bads]
    ledger.append(openai_event())
    df = ledger.df  # one bad row never makes the frame unreadable
    assert len(df) == len(bads) + 2 and [ref.index for ref in refs] == list(range(1, len(bads) + 1))
    failed = df.iloc[1 : len(bads) + 1]
    assert set(failed.status) == {"failed"}
    assert all(error.startswith("this call's row could not be stored") for error in failed.error)
    assert "use_case_version is out of range" in failed.error.iloc[-2]
    assert df.status.iloc[0] == df.status.iloc[-1] == "pending"
    ledger.to_csv(io.StringIO())


def test_reset_makes_refs_stale():
    ledger = Ledger()
    old = ledger.append(openai_event())
    ledger.reset()
    assert len(ledger) == 0 and ledger.generation == 1 and len(ledger.df) == 0
    new = ledger.append(openai_event())
    assert new == RowRef(1, 0) and old.index == new.index
    version = ledger.version
    assert ledger.update(old, status="sent") is False
    assert ledger.update(RowRef(1, 5), status="sent") is False
    assert ledger.xproxy_result(old) is None
    assert ledger.version == version and ledger.df["status"][0] == "pending"
    assert ledger.update(new, status="sent") is True


def test_df_is_cached_until_a_change_and_callers_cannot_corrupt_it():
    ledger = Ledger()
    ref = ledger.append(openai_event())
    first, second = ledger.df, ledger.df
    assert first is not second
    assert np.shares_memory(first["input_tokens"].to_numpy(), second["input_tokens"].to_numpy())

    first.loc[0, "input_tokens"] = -1
    first["mine"] = 1
    del first["units"]
    third = ledger.df
    assert third["input_tokens"][0] == 120 and "mine" not in third and "units" in third

    ledger.update(ref, status="sent")
    fourth = ledger.df
    assert fourth["status"][0] == "sent"
    assert not np.shares_memory(third["input_tokens"].to_numpy(), fourth["input_tokens"].to_numpy())
    ledger.append(openai_event())
    assert len(ledger.df) == 2


def test_version_counts_every_change():
    ledger = Ledger()
    assert ledger.version == 0
    ref = ledger.append(openai_event())
    ledger.update(ref, status="sent")
    ledger.update(RowRef(9, 0), status="sent")
    ledger.reset()
    assert ledger.version == 3


def test_concurrent_appends_updates_and_builds_lose_nothing():
    ledger = Ledger()
    threads, per_thread = 4, 1500
    made = [[openai_event(prompt=t * 10_000 + i) for i in range(per_thread)] for t in range(threads)]
    sent = []
    barrier = threading.Barrier(threads + 1)

    def work(events: list[UsageEvent]) -> None:
        barrier.wait()
        for i, event in enumerate(events):
            ref = ledger.append(event)
            if i % 3 == 0:
                assert ledger.update(ref, status="sent", payi_cost_usd=0.001)
                sent.append(ref)

    def read() -> None:
        barrier.wait()
        for _ in range(20):
            df = ledger.df
            assert df["event_id"].is_unique and len(df) <= threads * per_thread

    workers = [threading.Thread(target=work, args=(events,)) for events in made]
    reader = threading.Thread(target=read)
    for t in [*workers, reader]:
        t.start()
    for t in [*workers, reader]:
        t.join()
    df = ledger.df
    assert len(ledger) == len(df) == threads * per_thread
    assert set(df["event_id"]) == {e.event_id for events in made for e in events}
    assert (df["status"] == "sent").sum() == len(sent) == threads * per_thread // 3
    by_id = df.set_index("event_id")["input_tokens"]
    assert all(by_id[e.event_id] == e.tokens.input for events in made for e in events)
    assert ledger.version == threads * per_thread + len(sent)


def test_subscribers_hear_every_change_and_a_failing_one_breaks_nothing(caplog):
    ledger = Ledger()
    heard = []
    unsubscribe = ledger.subscribe(lambda: heard.append(ledger.version))

    def broken() -> None:
        raise RuntimeError("widget exploded")

    ledger.subscribe(broken)
    with caplog.at_level(logging.DEBUG, logger="payi_notebook.ledger"):
        ref = ledger.append(openai_event())
        ledger.update(ref, status="sent")
        ledger.reset()
    assert heard == [1, 2, 3]
    failures = [r for r in caplog.records if "widget exploded" in str(r.exc_info)]
    assert len(failures) == 3 and failures[0].levelno == logging.ERROR and failures[1].levelno == logging.DEBUG
    unsubscribe()
    unsubscribe()
    ledger.append(openai_event())
    assert heard == [1, 2, 3] and len(ledger) == 1


def test_totals_sum_known_costs_and_count_unpriced():
    ledger = Ledger()
    a = ledger.append(openai_event(prompt=100, completion=10, cached=20, est_cost_usd=0.01))
    b = ledger.append(openai_event(prompt=200, completion=20, reasoning=5, est_cost_usd=None))
    c = ledger.append(openai_event(prompt=300, completion=30, est_cost_usd=0.03, payi_cost_usd=0.05))
    ledger.update(a, limit_states={"team-q4": "ok", "ana-daily": "ok"}, status="sent")
    ledger.update(c, limit_states={"team-q4": "exceeded"}, status="sent", error="slow")
    totals = ledger.totals([a, b, c, c, RowRef(5, 0), RowRef(0, 99)])
    assert totals == Totals(
        calls=3,
        input_tokens=600,
        output_tokens=60,
        cache_read_tokens=20,
        cache_write_tokens=0,
        reasoning_tokens=5,
        cost_usd=pytest.approx(0.06),
        unpriced=1,
        cost_source="mixed",
        statuses={"sent": 2, "pending": 1},
        limit_states={"team-q4": "exceeded", "ana-daily": "ok"},
        errors=1,
        unpriced_models=("gpt-4.1",),  # the model of row b, the one without a price: the badge's reason
    )
    assert ledger.totals([c]).cost_source == "payi" and ledger.totals([a]).cost_source == "estimate"
    only_unpriced = ledger.totals([b])
    assert math.isnan(only_unpriced.cost_usd) and only_unpriced.cost_source == "unknown"
    assert ledger.totals([]) == Totals() == Ledger().totals([RowRef(0, 0)])
    ledger.reset()
    assert ledger.totals([a, b]).calls == 0


PROXY_RESULT = {"request_id": "9", "cost": {"total": {"base": 0.25}}, "ok": True, "none": None}
ERR = 'boom, "quoted"\nline'
WEB_SEARCH_USAGE = {"input_tokens": 10, "output_tokens": 5, "server_tool_use": {"web_search_requests": 1}}


def _filled_ledger() -> Ledger:
    ledger = Ledger()
    refs = [
        ledger.append(openai_event(cached=50, reasoning=3)),
        ledger.append(anthropic_event(WEB_SEARCH_USAGE)),
        ledger.append(openai_event(mode="proxy", status="proxied", xproxy_result=PROXY_RESULT)),
        ledger.append(UsageEvent("openai", "system.openai", "chat", status="failed", error=ERR)),
    ]
    ledger.update(refs[0], status="sent", payi_cost_usd=0.1, limit_states={"team-q4": "ok"}, payi_request_id="r-0")
    return ledger


def test_parquet_round_trip(tmp_path):
    ledger = _filled_ledger()
    path = tmp_path / "ledger.parquet"
    ledger.to_parquet(path)
    back = read_parquet(path)
    pd.testing.assert_frame_equal(back, ledger.df)
    assert type(back["limit_ids"][0]) is list and json.loads(back["xproxy_json"][2]) == PROXY_RESULT

    some = ledger.df[ledger.df["status"].isin(["proxied", "failed"])]
    to_parquet(some, tmp_path / "some.parquet")
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "some.parquet"), some)
    assert list(read_parquet(tmp_path / "some.parquet").index) == [2, 3]

    empty = tmp_path / "empty.parquet"
    Ledger().to_parquet(empty)
    pd.testing.assert_frame_equal(read_parquet(empty), Ledger().df)


def test_csv_round_trip(tmp_path):
    ledger = _filled_ledger()
    path = tmp_path / "ledger.csv"
    ledger.to_csv(path)
    back = read_csv(path)
    pd.testing.assert_frame_equal(back, ledger.df, check_categorical=False)
    assert {c: str(t) for c, t in back.dtypes.items()} == DTYPES


def test_statuses_constant_matches_the_status_column():
    ledger = Ledger()
    for status in STATUSES:
        ledger.append(openai_event(status=status))
    df = ledger.df
    assert df["status"].tolist() == list(STATUSES)
    assert list(df["status"].cat.categories) == list(STATUSES)


def _varied_ledger() -> Ledger:
    """Rows over several contexts (limits or none), providers, statuses, errors and proxy results."""
    ledger = _filled_ledger()
    other = derive(Context(), user_id="bo", limit_ids=["org-monthly"], properties={"k": "v"})
    ledger.append(openai_event(context=other, prompt=900, est_cost_usd=0.5))
    ledger.append(anthropic_event({"input_tokens": 40, "output_tokens": 2}, context=other, est_cost_usd=0.25))
    ledger.append(openai_event(context=Context(), est_cost_usd=0.125, error="late"))
    return ledger


@pytest.mark.parametrize("column", COLUMNS)
def test_frame_of_one_column_equals_that_column_of_df(column):
    ledger = _varied_ledger()
    pd.testing.assert_frame_equal(ledger.frame([column]), ledger.df[[column]])
    empty = Ledger()
    pd.testing.assert_frame_equal(empty.frame([column]), empty.df[[column]])


def test_frame_keeps_the_requested_order_and_builds_only_those_columns():
    ledger = _varied_ledger()
    wanted = ["cost_usd", "resource", "timestamp", "status", "input_tokens", "user_id"]
    frame = ledger.frame(wanted)
    assert list(frame.columns) == wanted
    assert {c: str(t) for c, t in frame.dtypes.items()} == {c: DTYPES[c] for c in wanted}
    pd.testing.assert_frame_equal(frame, ledger.df[wanted])
    assert ledger.frame(("cost_usd",)).equals(ledger.df[["cost_usd"]])
    nothing = ledger.frame([])
    assert nothing.shape == (len(ledger), 0) and list(nothing.index) == list(range(len(ledger)))


def test_frame_is_cached_per_version_and_callers_cannot_corrupt_it():
    ledger = _varied_ledger()
    first, second = ledger.frame(["cost_usd", "status"]), ledger.frame(["cost_usd", "status"])
    assert first is not second
    assert np.shares_memory(first["cost_usd"].to_numpy(), second["cost_usd"].to_numpy())
    first.loc[0, "cost_usd"] = -1.0
    first["mine"] = 1
    third = ledger.frame(["cost_usd", "status"])
    assert third["cost_usd"][0] == ledger.df["cost_usd"][0] != -1.0 and "mine" not in third

    ledger.update(RowRef(0, 1), status="blocked", payi_cost_usd=2.0)
    fourth = ledger.frame(["cost_usd", "status"])
    assert (fourth["status"][1], fourth["cost_usd"][1]) == ("blocked", 2.0)
    assert not np.shares_memory(third["cost_usd"].to_numpy(), fourth["cost_usd"].to_numpy())
    ledger.append(openai_event())
    assert len(ledger.frame(["cost_usd", "status"])) == len(ledger) == 8
    df = ledger.df
    many = [ledger.frame(["limit_id", name]) for name in COLUMNS[:12]]  # more lists than the cache keeps
    assert all(len(frame) == 11 for frame in many)
    assert np.shares_memory(df["input_tokens"].to_numpy(), ledger.df["input_tokens"].to_numpy())  # df stays
    ledger.reset()
    assert len(ledger.frame(["cost_usd", "status"])) == 0


def test_frame_after_df_takes_its_columns():
    ledger = _varied_ledger()
    df = ledger.df
    frame = ledger.frame(["input_tokens", "resource"])
    assert np.shares_memory(frame["input_tokens"].to_numpy(), df["input_tokens"].to_numpy())
    frame.loc[0, "input_tokens"] = -5
    assert ledger.df["input_tokens"][0] != -5 and ledger.frame(["input_tokens"])["input_tokens"][0] != -5


def test_frame_rejects_unknown_repeated_and_string_columns():
    ledger = _varied_ledger()
    with pytest.raises(UnknownColumnError) as caught:
        ledger.frame(["cost_usd", "cost"])
    message = str(caught.value)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    assert "\n" not in message and "'cost'" in message and "cost_usd" in message and "limit_id" in message
    with pytest.raises(ValueError, match="valid: event_id"):
        ledger.frame([3])
    with pytest.raises(ValueError, match=r"\['resource'\] more than once"):
        ledger.frame(["resource", "cost_usd", "resource"])
    with pytest.raises(TypeError, match="list of column names"):
        ledger.frame("cost_usd")
    assert set(FRAME_COLUMNS) == {*COLUMNS, "limit_id"}


def test_limit_id_explodes_limit_ids_one_row_per_limit():
    ledger = _varied_ledger()
    df = ledger.df
    frame = ledger.frame(["cost_usd", "limit_id", "limit_ids", "status"])
    assert list(frame.columns) == ["cost_usd", "limit_id", "limit_ids", "status"]
    assert str(frame["limit_id"].dtype) == "category"
    expected = df[["cost_usd", "limit_ids", "status"]].explode("limit_ids")
    assert list(frame.index) == list(expected.index)
    assert [None if pd.isna(v) else v for v in frame["limit_id"]] == [
        None if pd.isna(v) else v for v in expected["limit_ids"]
    ]
    assert frame["cost_usd"].equals(expected["cost_usd"]) and frame["status"].equals(expected["status"])
    assert list(frame["limit_id"].cat.categories) == ["team-q4", "ana-daily", "org-monthly"]
    sums = frame.groupby("limit_id", observed=True)["cost_usd"].sum()
    for limit_id, total in sums.items():
        assert total == pytest.approx(df["cost_usd"][[limit_id in ids for ids in df["limit_ids"]]].sum())
    only = ledger.frame(["limit_id"])
    assert list(only.columns) == ["limit_id"] and len(only) == len(frame)
    assert Ledger().frame(["limit_id", "cost_usd"]).dtypes.astype(str).to_dict() == {
        "limit_id": "category",
        "cost_usd": "float64",
    }


def test_rows_with_equal_nested_values_share_one_object_per_build():
    ledger = Ledger()
    same = openai_event(prompt=500, completion=20)
    for _ in range(3):
        ledger.append(openai_event(prompt=500, completion=20))
    ledger.append(openai_event(prompt=501, completion=20))
    ledger.append(UsageEvent("openai", "system.openai", "chat"))  # no units
    ledger.append(UsageEvent("openai", "system.openai", "chat", context=CTX))
    df = ledger.df
    units, props, ids, states = (df[c].tolist() for c in ("units", "properties", "limit_ids", "limit_states"))
    assert units[0] is units[1] is units[2] and units[0] == same.units and units[3] is not units[0]
    assert units[3] == {"text": {"input": 501, "output": 20}} and units[4] == {} and units[5] == {}
    assert props[0] is props[1] is props[5] and ids[0] is ids[5] and states[0] is states[1]
    assert props[4] == {} and props[4] is not props[0] and ids[4] == []

    props[0]["experiment"] = "changed"  # read-only by convention: this reaches every row of the build...
    assert ledger.df["properties"][1]["experiment"] == "changed"
    ledger.append(openai_event())
    fresh = ledger.df  # ...but not the ledger: the next build makes new objects
    assert fresh["properties"][1] == {"experiment": "a"} and fresh["units"][0] is not units[0]
    assert fresh["units"][0] == same.units


def test_units_column_matches_compact_units_row_by_row():
    rng = np.random.default_rng(5)
    n = 4000
    anthropic = rng.random(n) < 0.5
    inp = rng.choice([0, 7, 1500, 199_999, 200_000, 250_000], n) + rng.integers(0, 3, n)
    out = rng.integers(0, 40, n)
    read = rng.choice([0, 0, 3, 1024], n)
    write = np.where(anthropic, rng.choice([0, 11], n), 0)
    reasoning = np.where(anthropic, 0, rng.choice([0, 5], n))
    inp[:3] = [-(2**40), 2**40, 2**62]  # ranges wider than the rows and far apart still map exactly
    column = _units_column(anthropic, inp, out, read, write, reasoning)
    rows = zip(anthropic.tolist(), *(a.tolist() for a in (inp, out, read, write, reasoning)))
    expected = [_compact_units(*row) for row in rows]
    assert column.tolist() == expected
    firsts = {}
    for key, made in zip(zip(anthropic.tolist(), map(repr, expected)), column):
        assert firsts.setdefault(key, made) is made  # one object per distinct map of a provider
    assert len({id(made) for made in column}) == len(firsts) < n
    assert _units_column(*(np.zeros(0, dtype=t) for t in (bool, *[np.int64] * 5))).tolist() == []


def test_distinct_numbers_equal_rows_alike_whatever_their_ranges():
    rng = np.random.default_rng(9)
    n = 20_000  # five columns as wide as the rows overflow one int64 key: it is factorised on the way
    columns = [rng.integers(0, n, n) for _ in range(4)] + [rng.integers(-(2**62), 2**62, n) // 2**50]
    columns[0][n // 2 :] = columns[0][: n // 2]  # half the rows repeat the first half
    for column in columns[1:]:
        column[n // 2 :] = column[: n // 2]
    codes, firsts = _distinct(columns)
    numbered: dict[tuple[int, ...], int] = {}
    expected = [numbered.setdefault(row, len(numbered)) for row in zip(*(c.tolist() for c in columns))]
    assert codes.tolist() == expected and len(firsts) == len(numbered) <= n // 2
    first_rows: dict[int, int] = {}
    for row, code in enumerate(expected):
        first_rows.setdefault(code, row)
    assert list(first_rows.values()) == firsts.tolist()


def test_concurrent_appends_and_frames_stay_consistent():
    ledger = Ledger()
    events = [openai_event(prompt=10 + i) for i in range(3000)]
    barrier = threading.Barrier(2)
    seen = []

    def read() -> None:
        barrier.wait()
        for _ in range(30):
            frame = ledger.frame(["input_tokens", "limit_id", "cost_usd"])
            seen.append(len(frame))
            assert frame.index.is_monotonic_increasing and (frame["input_tokens"] >= 10).all()

    reader = threading.Thread(target=read)
    reader.start()
    barrier.wait()
    for event in events:
        ledger.append(event)
    reader.join()
    final = ledger.frame(["input_tokens", "limit_id"])
    assert len(final) == 2 * len(events) and seen == sorted(seen)
    assert sorted(set(final["input_tokens"])) == [e.tokens.input for e in events]


def test_deferred_rows_are_filled_in_reservation_order_when_first_needed():
    ledger = Ledger()
    built = []

    def later(prompt: int):
        def make() -> UsageEvent:
            built.append(prompt)
            return openai_event(prompt=prompt)

        return make

    refs = [ledger.append_later(later(100)), ledger.append(openai_event(prompt=200)), ledger.append_later(later(300))]
    assert [r.index for r in refs] == [0, 1, 2] and len(ledger) == 3
    assert built == [], "nothing is built on the append path"
    assert list(ledger.df.input_tokens) == [100, 200, 300]
    assert built == [100, 300]
    late = ledger.append_later(later(400))
    assert ledger.update(late, status="sent", payi_cost_usd=0.5)
    assert ledger.df.iloc[3].status == "sent" and ledger.totals([late]).input_tokens == 400


def test_a_deferred_row_that_cannot_be_built_still_takes_its_place():
    ledger = Ledger()

    def broken() -> UsageEvent:
        raise ValueError("unparseable")

    ledger.append_later(broken)
    ok = ledger.append_later(lambda: openai_event(prompt=7))
    df = ledger.df
    assert len(df) == 2 and "unparseable" in df.iloc[0].error and df.iloc[1].input_tokens == 7
    assert ledger.totals([ok]).input_tokens == 7


def test_reset_drops_rows_still_waiting_to_be_built():
    ledger = Ledger()
    stale = ledger.append_later(lambda: openai_event())
    ledger.reset()
    assert len(ledger) == 0 and len(ledger.df) == 0 and not ledger.update(stale, status="sent")
    fresh = ledger.append_later(lambda: openai_event(prompt=9))
    assert fresh.index == 0 and ledger.df.iloc[0].input_tokens == 9


def test_deferred_and_direct_appends_from_many_threads_keep_every_row_once():
    ledger = Ledger()
    per_thread, threads = 300, 4

    def work(t: int) -> None:
        for i in range(per_thread):
            prompt = t * 10_000 + i
            if i % 2:
                ledger.append(openai_event(prompt=prompt))
            else:
                ledger.append_later(lambda prompt=prompt: openai_event(prompt=prompt))
            if i % 50 == 0:
                ledger.materialize()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    df = ledger.df
    assert len(df) == per_thread * threads
    assert sorted(df.input_tokens) == sorted(t * 10_000 + i for t in range(threads) for i in range(per_thread))
    assert list(df.index) == list(range(per_thread * threads))
