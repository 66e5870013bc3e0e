"""The foreground-yield policy: hold back while calls come back to back, never past the cap."""

from __future__ import annotations

import pytest

from payi_notebook.delivery.yielding import ForegroundYield


def test_an_idle_foreground_is_not_waited_for() -> None:
    policy = ForegroundYield(quiet_s=0.1, max_defer_s=1.0)
    assert policy.defer(50.0) == 0.0 and policy.quiet(50.0) and policy.quiet_in(50.0) == 0.0


def test_back_to_back_calls_defer_until_a_pause() -> None:
    policy = ForegroundYield(quiet_s=0.1, max_defer_s=1.0)
    policy.submitted(10.0)
    assert policy.defer(10.02) == pytest.approx(0.08)  # the foreground may make another call
    assert not policy.quiet(10.02) and policy.quiet_in(10.02) == pytest.approx(0.08)
    assert policy.defer(10.2) == 0.0 and policy.quiet(10.2)  # a pause: go


def test_no_event_waits_longer_than_the_cap_however_busy_the_foreground() -> None:
    policy = ForegroundYield(quiet_s=0.1, max_defer_s=1.0)
    now = 10.0
    while now < 10.95:
        policy.submitted(now)
        now += 0.05
    assert policy.backlog_since == 10.0
    assert policy.defer(now) == pytest.approx(11.0 - now)
    policy.submitted(11.0)
    assert policy.defer(11.0) == 0.0  # the oldest waited max_defer_s: go, though calls keep coming
    policy.taken()  # the sender took the backlog: the cap counts from the next event
    policy.submitted(11.01)
    assert policy.defer(11.02) == pytest.approx(0.09)


def test_a_waiting_caller_is_never_kept_waiting() -> None:
    policy = ForegroundYield()
    policy.submitted(10.0)
    policy.urgent += 1
    assert policy.defer(10.0) == 0.0 and policy.quiet(10.0)
