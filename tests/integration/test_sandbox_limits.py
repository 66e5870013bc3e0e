"""Limit routes and limit arithmetic, over real loopback HTTP, every body checked against the spec."""

from __future__ import annotations

import uuid

import pytest

from payi_notebook.pricing import price_units

from support.sandbox_api import Api, openai_event

LIMITS = "/api/v1/limits"
ONE = "/api/v1/limits/{limit_id}"


def _name() -> str:
    return f"budget-{uuid.uuid4().hex[:8]}"


def _event_cost(body: dict) -> float:
    return price_units(body["category"], body["resource"], body["units"]).total


def test_create_get_update_delete(api: Api) -> None:
    name = _name()
    created = api.call("POST", LIMITS, json={"limit_name": name, "max": 12.5, "threshold": 0.8, "limit_type": "block"})
    assert created.status_code == 201
    limit = created.json()["limit"]
    assert limit["limit_name"] == name and limit["max"] == 12.5 and limit["threshold"] == 0.8
    assert limit["limit_type"] == "block" and limit["limit_id"]
    assert limit["totals"]["requests"] == {
        k: 0 for k in ("ok", "exceeded", "overrun", "blocked", "blocked_external", "failed", "total")
    }
    limit_id = limit["limit_id"]
    assert api.limit(limit_id)["limit_name"] == name

    renamed = api.call("PUT", ONE, {"limit_id": limit_id}, json={"limit_name": name + "-x", "max": 20})
    assert renamed.status_code == 200
    assert renamed.json()["limit"]["limit_name"] == name + "-x" and renamed.json()["limit"]["max"] == 20
    assert api.limit(limit_id)["max"] == 20

    deleted = api.call("DELETE", ONE, {"limit_id": limit_id})
    assert deleted.status_code == 200 and deleted.json()["request_id"]
    gone = api.call("GET", ONE, {"limit_id": limit_id})
    assert gone.status_code == 400 and gone.json()["xproxy_error"]["code"] == "limit_not_found"
    again = api.call("DELETE", ONE, {"limit_id": limit_id})
    assert again.json()["xproxy_error"]["code"] == "limit_not_found"


def test_default_limit_type_is_allow_and_threshold_absent(api: Api) -> None:
    limit = api.call("POST", LIMITS, json={"limit_name": _name(), "max": 1}).json()["limit"]
    assert limit["limit_type"] == "allow" and "threshold" not in limit


def test_create_with_existing_id_is_idempotent_only_for_identical_values(api: Api) -> None:
    body = {"limit_id": f"id-{uuid.uuid4().hex[:8]}", "limit_name": _name(), "max": 3.0, "threshold": 0.9}
    assert api.call("POST", LIMITS, json=body).status_code == 201
    same = api.call("POST", LIMITS, json=body)
    assert same.status_code == 200 and same.json()["limit"]["limit_id"] == body["limit_id"]
    different = api.call("POST", LIMITS, json={**body, "max": 4.0})
    assert different.status_code == 400
    assert different.json()["xproxy_error"]["code"] == "create_limit_validation_failed"
    assert body["limit_id"] in different.json()["message"]


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"limit_name": "n", "max": 0}, "invalid_max_limit", "max"),
        ({"limit_name": "n", "max": -5}, "invalid_max_limit", "max"),
        ({"limit_name": "n", "max": 1, "threshold": 0}, "create_limit_validation_failed", "threshold"),
        ({"limit_name": "n", "max": 1, "threshold": 1.5}, "create_limit_validation_failed", "threshold"),
        ({"limit_name": "n", "max": 1, "threshold": 0.5}, "create_limit_validation_failed", "0.75"),
        ({"limit_name": "n", "max": 1, "limit_type": "soft"}, "create_limit_validation_failed", "limit_type"),
        ({"limit_name": "n", "max": "10"}, "create_limit_validation_failed", "max"),
        ({"max": 1}, "create_limit_validation_failed", "limit_name"),
        ({"limit_name": "", "max": 1}, "create_limit_validation_failed", "limit_name"),
        ({"limit_name": "n", "max": 1, "budget": 2}, "create_limit_validation_failed", "budget: unknown field"),
        ({"limit_name": "n", "max": 1, "limit_id": "a,b"}, "create_limit_validation_failed", "limit_id"),
    ],
)
def test_create_refuses_bad_settings(api: Api, body: dict, code: str, names: str) -> None:
    response = api.call("POST", LIMITS, json=body)
    assert response.status_code == 400
    assert response.json()["xproxy_error"]["code"] == code
    assert names in response.json()["message"]


def test_names_are_unique(api: Api) -> None:
    name = _name()
    first = api.call("POST", LIMITS, json={"limit_name": name, "max": 1}).json()["limit"]["limit_id"]
    clash = api.call("POST", LIMITS, json={"limit_name": name, "max": 1})
    assert clash.status_code == 400 and clash.json()["xproxy_error"]["code"] == "limit_name_already_exist"
    other = api.call("POST", LIMITS, json={"limit_name": _name(), "max": 1}).json()["limit"]["limit_id"]
    rename = api.call("PUT", ONE, {"limit_id": other}, json={"limit_name": name})
    assert rename.status_code == 400 and rename.json()["xproxy_error"]["code"] == "limit_name_already_exist"
    assert api.limit(first)["limit_name"] == name


def test_update_rules(api: Api) -> None:
    limit_id = api.create_limit(max=10.0)
    body = openai_event(units={"text": {"input": 100_000, "output": 10_000}})
    api.ingest(body, headers={"xProxy-Limit-IDs": limit_id})
    spend = _event_cost(body)
    below = api.call("PUT", ONE, {"limit_id": limit_id}, json={"max": spend / 2})
    assert below.status_code == 400 and below.json()["xproxy_error"]["code"] == "invalid_max_limit_update"
    zero = api.call("PUT", ONE, {"limit_id": limit_id}, json={"max": 0})
    assert zero.json()["xproxy_error"]["code"] == "invalid_max_limit"
    unknown = api.call("PUT", ONE, {"limit_id": limit_id}, json={"threshold": 0.8})
    assert unknown.json()["xproxy_error"]["code"] == "update_limit_validation_failed"
    missing = api.call("PUT", ONE, {"limit_id": "nope"}, json={"max": 3})
    assert missing.json()["xproxy_error"]["code"] == "limit_not_found"
    assert api.limit(limit_id)["max"] == 10.0
    ok = api.call("PUT", ONE, {"limit_id": limit_id}, json={"max": spend * 2})
    assert ok.status_code == 200 and ok.json()["limit"]["max"] == pytest.approx(spend * 2)


def test_properties_update(api: Api) -> None:
    limit_id = api.create_limit(max=1.0)
    path = "/api/v1/limits/{limit_id}/properties"
    updated = api.call("PUT", path, {"limit_id": limit_id}, json={"properties": {"team": "search"}})
    assert updated.status_code == 200 and updated.json()[0]["limit"]["limit_id"] == limit_id
    missing = api.call("PUT", path, {"limit_id": "nope"}, json={"properties": {"a": "b"}})
    assert missing.status_code == 404 and missing.json()["xproxy_error"]["code"] == "limit_not_found"
    bad = api.call("PUT", path, {"limit_id": limit_id}, json={"properties": {"a": 1}})
    assert bad.status_code == 400 and "properties.a" in bad.json()["message"]


def test_list_filters_sorts_and_pages(api: Api) -> None:
    ids = [api.create_limit(max=1.0) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.call("GET", LIMITS, params=params).json()
        assert len(page["items"]) <= 2
        seen += [item["limit_id"] for item in page["items"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert [limit_id for limit_id in seen if limit_id in ids] == ids
    assert len(seen) == len(set(seen))
    newest_first = api.call("GET", LIMITS, params={"sort_ascending": "false", "limit": "1"}).json()
    assert newest_first["items"][0]["limit_id"] == ids[-1]
    named = api.call("GET", LIMITS, params={"limit_name": ids[2]}).json()
    assert [item["limit_id"] for item in named["items"]] == [ids[2]] and named["cursor"] is None
    for params in ({"limit": "0"}, {"sort_ascending": "maybe"}, {"cursor": "garbage"}):
        refused = api.call("GET", LIMITS, params=params)
        assert refused.status_code == 400, params


def test_states_ok_exceeded_overrun_and_allow_keeps_counting(api: Api) -> None:
    body = openai_event(units={"text": {"input": 20_000, "output": 2_000}})
    cost = _event_cost(body)
    limit_id = api.create_limit(max=cost * 2.2, threshold=0.8)
    states = []
    for _ in range(4):
        answer = api.ingest(openai_event(units=body["units"]), headers={"xProxy-Limit-IDs": limit_id}).json()
        states.append(answer["xproxy_result"]["limits"][limit_id]["state"])
        assert answer["xproxy_result"]["cost"]["total"]["base"] == pytest.approx(cost)
    assert states == ["ok", "exceeded", "overrun", "overrun"]
    totals = api.limit(limit_id)["totals"]
    assert totals["requests"] == {
        "ok": 1,
        "exceeded": 1,
        "overrun": 2,
        "blocked": 0,
        "blocked_external": 0,
        "failed": 0,
        "total": 4,
    }
    assert totals["cost"]["total"]["base"] == pytest.approx(4 * cost)
    assert totals["cost"]["total"]["overrun_base"] == pytest.approx(4 * cost - 2.2 * cost)
    price = price_units(body["category"], body["resource"], body["units"])
    assert totals["cost"]["input"]["base"] == pytest.approx(4 * price.input)
    assert totals["cost"]["output"]["base"] == pytest.approx(4 * price.output)


def test_spend_exactly_at_max_is_exceeded_not_overrun(api: Api) -> None:
    body = openai_event(units={"text": {"input": 4_000, "output": 0}})
    limit_id = api.create_limit(max=_event_cost(body))
    answer = api.ingest(body, headers={"xProxy-Limit-IDs": limit_id}).json()
    assert answer["xproxy_result"]["limits"][limit_id]["state"] == "exceeded"


def test_one_event_updates_every_named_limit(api: Api) -> None:
    small, large = api.create_limit(max=1e-9), api.create_limit(max=100.0)
    answer = api.ingest(openai_event(), headers={"xProxy-Limit-IDs": f"{small},{large}"}).json()
    assert answer["xproxy_result"]["limits"] == {small: {"state": "overrun"}, large: {"state": "ok"}}
    bulk = api.bulk([openai_event(limit_ids=[small, large])])
    assert bulk.status_code == 200
    assert api.limit(small)["totals"]["requests"]["overrun"] == 2
    assert api.limit(large)["totals"]["requests"]["ok"] == 2


def test_reset_zeroes_spend_and_returns_history(api: Api) -> None:
    body = openai_event()
    limit_id = api.create_limit(max=1e-9)
    api.ingest(body, headers={"xProxy-Limit-IDs": limit_id})
    before = api.limit(limit_id)["totals"]
    reset = api.call("POST", "/api/v1/limits/{limit_id}/reset", {"limit_id": limit_id})
    assert reset.status_code == 200
    history = reset.json()["limit_history"]
    assert history["limit_id"] == limit_id and history["totals"] == before
    assert history["totals"]["requests"]["overrun"] == 1
    after = api.limit(limit_id)["totals"]
    assert after["cost"]["total"]["base"] == 0 and after["requests"]["total"] == 0
    state = api.ingest(openai_event(units={"text": {"input": 0, "output": 0}}), headers={"xProxy-Limit-IDs": limit_id})
    assert state.json()["xproxy_result"]["limits"][limit_id]["state"] == "ok"
    dated = api.call(
        "POST", "/api/v1/limits/{limit_id}/reset", {"limit_id": limit_id}, params={"resetDate": "2030-01-01T00:00:00Z"}
    )
    assert dated.json()["limit_history"]["limit_reset_timestamp"].startswith("2030-01-01T00:00:00")
    bad = api.call("POST", "/api/v1/limits/{limit_id}/reset", {"limit_id": limit_id}, params={"resetDate": "soon"})
    assert bad.status_code == 400
    missing = api.call("POST", "/api/v1/limits/{limit_id}/reset", {"limit_id": "nope"})
    assert missing.json()["xproxy_error"]["code"] == "limit_not_found"


def test_deleted_limit_can_no_longer_be_named(api: Api) -> None:
    limit_id = api.create_limit(max=1.0)
    api.call("DELETE", ONE, {"limit_id": limit_id})
    response = api.ingest(openai_event(), headers={"xProxy-Limit-IDs": limit_id})
    assert response.status_code == 400 and response.json()["xproxy_error"]["code"] == "invalid_limit_ids"
