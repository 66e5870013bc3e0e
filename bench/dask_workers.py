"""LLM calls in Dask workers: what capture adds per task, and how fast rows come back.

A ``LocalCluster(processes=True, n_workers=2)`` and the real ``openai`` SDK against the
emulator (sandbox and emulator in a child process, as ``capture_overhead.py`` runs them).
Side by side in one run, batches alternating:

1. per task: the median time of a one-call task, submitted outside any scope (not captured)
   and inside ``pn.track()`` (captured in the worker, journalled, forwarded);
2. throughput: ``--calls`` calls (default 10,000) in tasks of ``--per-task`` calls each, inside
   a scope; the time until the last row is in the notebook's ledger, and until ``pn.flush()``
   says every event reached the sandbox.

This is a benchmark, not a test: machines are noisy.

    python bench/dask_workers.py [--calls 10000] [--per-task 50] [--tasks 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from _common import start_sandbox


def calls(first: int, count: int) -> float:
    """``count`` chat calls to the emulator; returns the seconds they took (in the worker)."""
    from distributed import get_worker
    from openai import OpenAI

    worker = get_worker()  # one client per worker, as a real job would keep one
    llm = getattr(worker, "bench_llm", None)
    if llm is None:
        llm = worker.bench_llm = OpenAI(base_url=os.environ["PAYI_SANDBOX_PROVIDER_URL"] + "/v1", api_key="emulated")
    start = time.perf_counter()
    for i in range(first, first + count):
        llm.chat.completions.create(model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": f"q {i}"}])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--per-task", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=200, help="one-call tasks per side for the per-task figure")
    args = parser.parse_args()

    sandbox, env = start_sandbox()
    os.environ.update(env)
    os.environ["PAYI_NOTEBOOK_DATA_DIR"] = tempfile.mkdtemp(prefix="payi-bench-dask-")
    from distributed import Client, LocalCluster

    import payi_notebook as pn

    try:
        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=4, dashboard_address=None)
        client = Client(cluster)
        pn.instrument()
        pn.dask.instrument(client)
        client.gather(client.map(calls, range(8), [1] * 8, pure=False))  # warm both workers

        bare: list[float] = []
        tracked: list[float] = []
        for batch in range(args.tasks // 20):
            firsts = range(batch * 20, batch * 20 + 20)
            bare += client.gather(client.map(calls, firsts, [1] * 20, pure=False))
            with pn.track(use_case_name="bench-task"):
                tracked += client.gather(client.map(calls, firsts, [1] * 20, pure=False))
        b, t = statistics.median(bare), statistics.median(tracked)
        print(f"one-call task, in the worker: bare {b * 1e3:.2f} ms, tracked {t * 1e3:.2f} ms, "
              f"capture adds {(t - b) * 1e6:.0f} us ({(t / b - 1) * 100:.1f} %)")

        pn.flush(60)
        before = len(pn.ledger())
        tasks = args.calls // args.per_task
        start = time.perf_counter()
        with pn.track(use_case_name="bench-throughput"):
            futures = client.map(calls, range(0, args.calls, args.per_task), [args.per_task] * tasks, pure=False)
        client.gather(futures)
        done = time.perf_counter() - start
        while len(pn.ledger()) - before < tasks * args.per_task and time.perf_counter() - start < 300:
            time.sleep(0.01)
        arrived = time.perf_counter() - start
        report = pn.flush(300)
        delivered = time.perf_counter() - start
        n = tasks * args.per_task
        print(f"{n} calls on 2 workers: tasks done in {done:.2f} s ({n / done:.0f} calls/s); "
              f"last row in the notebook {(arrived - done) * 1e3:.0f} ms later ({n / arrived:.0f} rows/s overall); "
              f"all delivered after {delivered:.2f} s: {report}")
        client.close()
        cluster.close()
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
