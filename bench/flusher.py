"""What ``Flusher.submit()`` costs on the request path (render the ingest body, journal it, enqueue).

The sandbox runs in a child process so its server does not compete for this process's GIL;
the flusher's own thread does, as it would in a notebook kernel. Two loads:

- sparse: one submit per 20 ms (a cell with many fast calls);
- paced: one submit per millisecond (busier than any real cell: the sender is busy in between);
- burst: submits back to back (worst case: the sender thread competes for the GIL).

Each with a small event and with ~4 KB of logged prompt/response JSON. Target: median <= 20 us.
The ``ref`` column times two ``json.dumps`` of a small dict under the same pacing: on small VMs
any code runs several times slower right after a sleep, and that is not submit's own cost.
This is a benchmark, not a test: machines are noisy.

    python bench/flusher.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from _common import start_sandbox

from payi_notebook.context import Context, derive
from payi_notebook.delivery import Flusher
from payi_notebook.events import UsageEvent
from payi_notebook.ledger import Ledger

from support.events import openai_event


def events(n: int, logged: bool) -> list[UsageEvent]:
    ctx = derive(Context(), use_case_name="bench", user_id="ana", properties={"notebook": "bench.ipynb"})
    request = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 2000}]}) if logged else None
    response = json.dumps({"id": "chatcmpl-x", "choices": [{"message": {"content": "y" * 2000}}]}) if logged else None
    return [
        openai_event(1200, 300, latency_ms=500.0, context=ctx, request_json=request, response_json=response, provider_uri=None)
        for _ in range(n)
    ]


REFERENCE = {"category": "system.openai", "resource": "gpt-4o-mini", "units": {"text": {"input": 1200, "output": 300}}}


def measure(flusher: Flusher, ledger: Ledger, batch: list[UsageEvent], gap_s: float) -> tuple[list[float], list[float]]:
    """Per-call submit() times, and under the same pacing a reference (two json.dumps of a small
    dict) that shows how much slower any code runs here after a pause (cold caches, CPU clock)."""
    refs = [ledger.append(event) for event in batch]
    timings, reference = [], []
    for i, (event, ref) in enumerate(zip(batch, refs)):
        if gap_s:
            time.sleep(gap_s)  # the next provider call: the kernel waits on the network, GIL released
        start = time.perf_counter_ns()
        if i % 2:
            json.dumps(REFERENCE)
            json.dumps(REFERENCE)
            reference.append((time.perf_counter_ns() - start) / 1000)
        flusher.submit(event, ref)
        if not i % 2:
            timings.append((time.perf_counter_ns() - start) / 1000)
    return timings, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    sandbox, _ = start_sandbox()
    try:
        with tempfile.TemporaryDirectory() as spool:
            ledger = Ledger()
            flusher = Flusher(ledger, base_url=sandbox.base_url, api_key=sandbox.api_key, spool_dir=spool)
            flusher.start()
            measure(flusher, ledger, events(200, False), 0.0)  # warm up
            flusher.flush(30)
            print(f"{'load':<8}{'event':<10}{'median us':>10}{'p90 us':>9}{'p99 us':>9}{'ref us':>8}")
            for load, gap, calls in (("sparse", 0.02, 400), ("paced", 0.001, args.calls), ("burst", 0.0, args.calls)):
                for label, logged in (("small", False), ("4KB log", True)):
                    timings, reference = measure(flusher, ledger, events(calls, logged), gap)
                    flusher.flush(60)
                    q = statistics.quantiles(timings, n=100)
                    print(
                        f"{load:<8}{label:<10}{statistics.median(timings):>10.1f}{q[89]:>9.1f}{q[98]:>9.1f}"
                        f"{statistics.median(reference):>8.1f}"
                    )
            print(flusher.status())
            flusher.stop(10)
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
