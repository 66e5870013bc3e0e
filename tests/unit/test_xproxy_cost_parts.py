"""``xproxy.cost_parts``: the cost breakdown the result view shows, read in the one place that knows the shape."""

from __future__ import annotations

from payi_notebook import xproxy


def test_parts_in_order_with_overrun_and_currency() -> None:
    result = {
        "cost": {
            "currency": "usd",
            "input": {"base": 0.001},
            "output": {"base": 0.002},
            "total": {"base": 0.003, "overrun_base": 0.0005},
        }
    }
    assert xproxy.cost_parts(result) == ({"input": 0.001, "output": 0.002, "total": 0.003, "overrun": 0.0005}, "usd")


def test_missing_odd_and_zero_overrun_parts_are_left_out() -> None:
    result = {"cost": {"input": {"base": "0.1"}, "output": {"base": True}, "total": {"base": 0, "overrun_base": 0}}}
    assert xproxy.cost_parts(result) == ({"total": 0.0}, None)


def test_no_cost_at_all() -> None:
    for result in (None, {}, {"cost": None}, {"cost": [1, 2]}, "text"):
        assert xproxy.cost_parts(result) == ({}, None)
