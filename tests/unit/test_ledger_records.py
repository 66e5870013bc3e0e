"""Unit tests of the ledger's pure pieces: record encoding, update changes, units from tokens."""

from __future__ import annotations

import itertools

import pytest

from payi_notebook.context import Context
from payi_notebook.events import STATUSES, UsageEvent
from payi_notebook.ledger.records import encode, prepare_changes, raw_event_id, shape_problem, units_fields
from payi_notebook.ledger.schema import ESTIMATED, NO_UNITS, PARTIAL, RECORD, SHAPE_TYPES, UPDATABLE
from payi_notebook.units import (
    TokenCounts,
    anthropic_units,
    empty_units,
    openai_units,
    token_counts,
    units_for,
    units_from_tokens,
)


def _event(**fields) -> UsageEvent:
    return UsageEvent(**{"provider": "openai", "category": "system.openai", "operation": "chat", **fields})


def test_raw_event_id_packs_lowercase_hex_and_keeps_the_rest_verbatim():
    assert raw_event_id("0123456789abcdef" * 2) == bytes.fromhex("0123456789abcdef" * 2)
    assert raw_event_id("1" * 32) == bytes.fromhex("1" * 32)
    for odd in ("0123456789ABCDEF" * 2, "abc", "g" * 32, "0123456789abcdef" * 2 + "0", ""):
        assert raw_event_id(odd) is None  # stored as given, not packed
    with pytest.raises(TypeError, match="event_id must be str, got int"):
        raw_event_id(12)


def test_encode_fills_every_record_field_and_packs():
    units = units_for("openai", {"prompt_tokens": 100, "completion_tokens": 7})
    event = _event(
        units=units,
        tokens=token_counts(units),
        provider_response_id="chatcmpl-1",
        http_status=200,
        latency_ms=12.5,
        est_cost_usd=0.25,
        partial=True,
        input_estimated=True,
        status="sent",
        xproxy_result={"request_id": "r-9", "limits": {"team": {"state": "ok"}, "bad": "x"}},
    )
    e = encode(event)
    assert e.raw_id == bytes.fromhex(event.event_id) and e.response == b"chatcmpl-1"
    assert e.request == b"r-9" and e.states == (("team", "ok"),) and e.xproxy.startswith(b"{")
    assert e.own_units is None  # token counts rebuild this map
    timestamp, *tokens, est, payi, latency, ttft, http, status, flags = e.numbers
    assert tokens == [100, 7, 0, 0, 0] and (est, latency, http) == (0.25, 12.5, 200)
    assert payi != payi and ttft != ttft  # NaN: unknown
    assert STATUSES[status] == "sent" and flags == PARTIAL | ESTIMATED
    assert len(RECORD.pack(bytes(16), 0, -1, -1, -1, -1, *e.numbers)) == RECORD.size
    assert e.key[: len(SHAPE_TYPES)] == ("telemetry", "openai", "system.openai", None, "chat", False) + (None,) * 5


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"provider_response_id": 5}, "provider_response_id must be str or None, got int"),
        ({"error": b"x"}, "error must be str or None, got bytes"),
        ({"status": "lost"}, "lost"),
        ({"xproxy_result": ["no"]}, "xproxy_result must be a dict"),
        ({"xproxy_result": {"x": object()}}, "xproxy_result must be JSON data"),
        ({"provider_response_id": "\ud800"}, "lone surrogate"),
    ],
)
def test_encode_names_the_malformed_field(fields, message):
    with pytest.raises(TypeError, match="well-formed UsageEvent") as raised:
        encode(_event(**fields))
    assert message in str(raised.value)


def test_units_fields_keep_only_maps_the_token_counts_cannot_rebuild():
    assert units_fields("openai", {}, TokenCounts()) == (NO_UNITS, None)
    plain = openai_units({"prompt_tokens": 50, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 20}})
    assert units_fields("openai", plain, token_counts(plain)) == (0, None)
    odd = {"text": {"input": 1, "output": 2}, "image": {"input": 3}}
    flags, kept = units_fields("openai", odd, token_counts(odd))
    assert flags == 0 and kept == odd and kept is not odd and kept["image"] is not odd["image"]  # a snapshot


def test_shape_problem_names_the_field_and_passes_good_shapes():
    good = ("telemetry", "openai", "system.openai", "gpt", "chat", False, "c", 3, "u", None, None)
    assert shape_problem(good, Context()) == ""
    assert "UsageEvent.streaming must be bool" in shape_problem(good[:5] + ("yes",) + good[6:], Context())
    assert "UsageEvent.execution_count must be int" in shape_problem(good[:7] + (True,) + good[8:], Context())
    assert "out of range" in shape_problem(good[:7] + (2**64,) + good[8:], Context())
    assert "must be a Context" in shape_problem(good, {"user_id": "x"})


def test_prepare_changes_validates_everything_first_and_derives_from_xproxy_result():
    with pytest.raises(TypeError, match="unknown field"):
        prepare_changes({"status": "sent", "cost_usd": 1.0})
    with pytest.raises(ValueError, match="status must be one of"):
        prepare_changes({"status": "done"})
    with pytest.raises(ValueError, match="http_status"):
        prepare_changes({"http_status": 70000})
    with pytest.raises(TypeError, match="limit_states must be a dict"):
        prepare_changes({"limit_states": {"a": 1}})
    result = {"request_id": "r1", "limits": {"l": {"state": "exceeded"}}}
    out = prepare_changes({"xproxy_result": result, "payi_cost_usd": 2})
    assert out["payi_request_id"] == b"r1" and out["limit_states"] == (("l", "exceeded"),) and out["payi_cost_usd"] == 2.0
    explicit = prepare_changes({"xproxy_result": result, "payi_request_id": "mine", "limit_states": None})
    assert explicit["payi_request_id"] == b"mine" and explicit["limit_states"] == ()  # explicit values win
    cleared = prepare_changes({"xproxy_result": None, "http_status": None, "error": None})
    assert cleared == {"xproxy_result": None, "http_status": -1, "error": None}
    assert set(prepare_changes({name: None for name in UPDATABLE - {"status"}})) == UPDATABLE - {"status"}


def test_units_from_tokens_is_the_inverse_of_token_counts_for_both_layouts():
    values = (0, 7, 1500, 199_999, 200_000)
    for prompt, completion, cached, reasoning in itertools.product(values, (0, 9), (0, 3), (0, 5)):
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion + reasoning,
            "prompt_tokens_details": {"cached_tokens": min(cached, prompt)},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        units = openai_units(usage)
        assert units_from_tokens("openai", token_counts(units)) == units
    for fresh, out, read, write in itertools.product(values, (0, 9), (0, 150_000), (0, 11)):
        units = anthropic_units(
            {"input_tokens": fresh, "output_tokens": out, "cache_read_input_tokens": read, "cache_creation_input_tokens": write}
        )
        for provider in ("anthropic", "azure_anthropic"):
            assert units_from_tokens(provider, token_counts(units)) == units


def test_empty_units_is_a_fresh_map_every_time():
    first, second = empty_units(), empty_units()
    assert first == second == {"text": {"input": 0, "output": 0}} == units_for("openai", None)
    first["text"]["input"] = 5
    assert empty_units()["text"]["input"] == 0 and second["text"]["input"] == 0
