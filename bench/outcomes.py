"""Outcomes benchmark: what the KPI join adds to ``pn.ledger().df``, ``pn.outcomes()``, and increments under threads.

    python bench/outcomes.py [--rows N] [--instances K] [--runs R] [--threads T] [--each E]

A ledger of N calls spread over K use case instances (two versions), every instance scored on
one KPI. Timed side by side in one process: the cached ``df`` access with no scores (what
every ``df`` costs without analytics), the same access with the join, and ``outcomes()``.
Then T threads each add 1 to one instance's KPI E times against a local sandbox, through
Pay-i's SDK helper (read, then write) and through ``pn.kpis.increment``: how many count.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

import _common  # noqa: F401  (the repo and tests/ on the path)

from payi_notebook.analytics import outcomes
from payi_notebook.analytics.kpis import Kpis, ScoreBook
from payi_notebook.analytics.use_cases import UseCases
from payi_notebook.client import PayiClient
from payi_notebook.context import Context, derive
from payi_notebook.ledger import Ledger

from support.events import openai_event


def _ledger(rows: int, instances: int, book: ScoreBook) -> Ledger:
    ledger = Ledger()
    contexts = [derive(Context(), use_case_name="bench", use_case_version=1 + i % 2) for i in range(instances)]
    for ctx in contexts:
        book.set(("bench", ctx.use_case_id, "accepted"), float(hash(ctx.use_case_id) % 2))  # type: ignore[arg-type]
    for n in range(rows):
        ledger.append(openai_event(100 + n % 50, 20, est_cost_usd=1e-5, context=contexts[n % instances]))
    return ledger


def _median(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_join(rows: int, instances: int, runs: int) -> None:
    book, notes = ScoreBook(), outcomes.Notes()
    ledger = _ledger(rows, instances, book)
    _ = ledger.df  # build and cache
    key = (id(ledger), 0, ledger.version)
    bare = _median(lambda: ledger.df, runs)
    joined = _median(lambda: outcomes.join(ledger.df, book, notes), runs)

    def after_score() -> None:  # a new score on a cached ledger: the rows → instances map is reused
        book.set(next(iter(dict(book.items()))), 1.0)
        view(ledger.df, key)

    view = outcomes.View(book, notes)
    view(ledger.df, key)
    cached = _median(lambda: view(ledger.df, key), runs)
    rescored = _median(after_score, runs)
    frame = outcomes.join(ledger.df, book, notes)
    per_instance = _median(lambda: outcomes.instances(frame), runs)
    print(f"{rows:,} rows, {instances:,} instances, median of {runs}:")
    print(f"  cached df, no scores              {bare * 1e3:8.2f} ms")
    print(f"  df + KPI join, from scratch       {joined * 1e3:8.2f} ms")
    print(f"  df + KPI join, view after a score {rescored * 1e3:8.2f} ms")
    print(f"  df + KPI join, view unchanged     {cached * 1e3:8.2f} ms   ({cached / bare:.1f}x the bare access)")
    print(f"  outcomes() on that frame          {per_instance * 1e3:8.2f} ms")


def bench_increments(threads: int, each: int) -> None:
    from payi import Payi
    from payi.lib.helpers import increment_kpi_score

    import payi_notebook.sandbox as sandbox_pkg

    with sandbox_pkg.start() as sandbox:
        shared = PayiClient(sandbox.base_url, sandbox.api_key)
        factory = lambda: shared  # noqa: E731  (as pn has it: one long-lived client)
        name = f"bench-{uuid.uuid4().hex[:6]}"
        UseCases(factory).create(name, "increment bench")
        kpis = Kpis(factory, ScoreBook(), lambda: (None, None))
        kpis.create(name, "turns", type="number", goal=1)
        sdk = Payi(api_key=sandbox.api_key, base_url=sandbox.base_url)

        def run(add) -> tuple[float, float]:  # type: ignore[no-untyped-def]
            instance = uuid.uuid4().hex
            barrier = threading.Barrier(threads)

            def work() -> None:
                barrier.wait()
                for _ in range(each):
                    add(instance)

            started = time.perf_counter()
            workers = [threading.Thread(target=work) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - started
            (score,) = [k.score for k in sdk.use_cases.kpis.list(instance, use_case_name=name)]
            return score, elapsed

        sdk_score, sdk_s = run(lambda i: increment_kpi_score(sdk, "turns", name, i))
        our_score, our_s = run(lambda i: kpis.increment("turns", use_case_name=name, use_case_id=i))
        total = threads * each
        print(f"{threads} threads x {each} increments of one instance's KPI ({total} in all), local sandbox:")
        print(
            f"  Pay-i SDK helper          score {sdk_score:5.0f} of {total} ({total - sdk_score:.0f} lost)  {sdk_s:6.2f} s"
        )
        print(
            f"  pn.kpis.increment         score {our_score:5.0f} of {total} ({total - our_score:.0f} lost)  {our_s:6.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--instances", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--each", type=int, default=10)
    args = parser.parse_args()
    bench_join(args.rows, args.instances, args.runs)
    bench_increments(args.threads, args.each)


if __name__ == "__main__":
    main()
