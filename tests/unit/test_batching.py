"""How the ready queue is cut into requests."""

from __future__ import annotations

from collections import deque

import pytest

from payi_notebook.delivery.batching import Batching
from payi_notebook.delivery.jobs import Job


def jobs(n: int, single: frozenset[int] = frozenset()) -> deque[Job]:
    return deque(Job(f"e{i}", None, None, {}, {}, single=i in single) for i in range(n))


def ids(batch: list[Job]) -> list[str]:
    return [job.event_id for job in batch]


def test_below_the_threshold_each_event_goes_alone() -> None:
    ready = jobs(3)
    batching = Batching(threshold=5, size=10)
    taken = [batching.take(ready) for _ in range(3)]
    assert [(ids(batch), bulk) for batch, bulk in taken] == [(["e0"], False), (["e1"], False), (["e2"], False)]
    assert not ready


def test_a_backlog_goes_in_bulk_batches_of_at_most_size_then_singly() -> None:
    ready = jobs(12)
    batching = Batching(threshold=5, size=4)
    first, second = batching.take(ready), batching.take(ready)
    assert (ids(first[0]), first[1]) == (["e0", "e1", "e2", "e3"], True)
    assert (ids(second[0]), second[1]) == (["e4", "e5", "e6", "e7"], True)
    assert len(ready) == 4  # under the threshold again: alone
    assert [(ids(batch), bulk) for batch, bulk in (batching.take(ready), batching.take(ready))] == [
        (["e8"], False),
        (["e9"], False),
    ]


def test_events_of_a_refused_batch_go_alone_and_stop_a_batch() -> None:
    ready = jobs(8, single=frozenset({0, 5}))
    batching = Batching(threshold=2, size=10)
    batch, bulk = batching.take(ready)
    assert (ids(batch), bulk) == (["e0"], False)  # marked single: alone even with a backlog
    batch, bulk = batching.take(ready)
    assert (ids(batch), bulk) == (["e1", "e2", "e3", "e4"], True)  # the batch ends before a single one
    batch, bulk = batching.take(ready)
    assert (ids(batch), bulk) == (["e5"], False)


def test_a_threshold_of_one_sends_even_one_event_in_bulk() -> None:
    batch, bulk = Batching(threshold=1, size=100).take(jobs(1))
    assert (ids(batch), bulk) == (["e0"], True)


@pytest.mark.parametrize(("threshold", "size"), [(0, 10), (10, 0)])
def test_bad_settings_are_refused(threshold: int, size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Batching(threshold, size)
