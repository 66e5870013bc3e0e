"""Backoff arithmetic on a fake clock: full jitter, the cap, Retry-After, and recovery."""

from __future__ import annotations

import random

import pytest

from payi_notebook.delivery.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Top(random.Random):
    """Always the top of the range, so the bound itself is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_full_jitter_doubles_its_bound_per_failure_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, clock=Clock(), rng=Top())
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.delay(10_000) == 30.0  # no overflow however long the outage


def test_full_jitter_draws_anywhere_from_zero_to_the_bound() -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(7))
    draws = [backoff.delay(4) for _ in range(2000)]
    assert min(draws) >= 0.0 and max(draws) <= 4.0
    assert min(draws) < 0.2 and max(draws) > 3.8  # the whole range, not a fixed step


def test_failures_in_a_row_pause_sending_longer_and_an_answer_resets_them() -> None:
    clock = Clock()
    backoff = Backoff(1.0, 10.0, clock=clock, rng=Top())
    assert not backoff.paused(clock.now) and backoff.limit(8) == 8
    assert backoff.failed(None) is True  # the first failure starts an outage
    assert backoff.pause_until == 101.0 and backoff.paused(clock.now) and backoff.limit(8) == 1
    assert backoff.failed(None) is False  # still the same outage
    assert backoff.pause_until == 102.0 and backoff.retry_in() == 2.0
    clock.now = 102.5
    assert not backoff.paused(clock.now) and backoff.retry_in() == 0.0
    assert backoff.reachable() is True and backoff.failures == 0 and backoff.limit(8) == 8
    assert backoff.reachable() is False  # nothing to end twice
    backoff.failed(None)
    assert backoff.pause_until == clock.now + 1.0  # starts from the base again


def test_retry_after_is_honoured_capped_and_jittered_upwards_only() -> None:
    clock = Clock()
    backoff = Backoff(0.5, 30.0, clock=clock, rng=random.Random(3))
    backoff.failed(2.0)
    assert 102.0 <= backoff.pause_until <= 102.2 and backoff.failures == 0
    backoff.failed(3600.0)
    assert 130.0 <= backoff.pause_until <= 133.0  # a huge Retry-After waits at most the cap (+10%)
    clock.now = 50.0
    backoff.failed(0.0)
    assert backoff.pause_until >= 130.0  # a shorter pause never cuts a longer one short


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_settings_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff_base"):
        Backoff(base, cap)
