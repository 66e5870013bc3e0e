"""``%load_ext payi_notebook`` in a fresh kernel: time until the prompt returns, before vs after.

    python bench/load_ext.py --before PATH [--runs N] [--after PATH] [--key]

Each run starts a fresh kernel (``demo.kernel_manager``: this interpreter) with ``PYTHONPATH``
set to one tree, waits until it is idle, then times ``%load_ext payi_notebook`` from the
execute request to its reply (what a user waits for before the next prompt), then the first
tracked cell that makes one emulated OpenAI call (which now waits for the session if it is
still starting). Trees alternate run by run, so load on the shared machine hits both alike.
Without ``--key`` the extension starts its own sandbox (the no-key default); with it, a
sandbox started here plays Pay-i and the kernel gets its key (a Pay-i user's load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from payi_notebook.demo import kernel_manager  # noqa: E402

CALL = """%%payi --use-case bench --quiet
import openai, payi_notebook as pn
openai.OpenAI(base_url=f"{pn.emulator_url()}/v1", api_key="emulated").chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
"""


def _timed(client: Any, code: str, timeout: float = 300) -> float:
    start = time.perf_counter()
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda message: None)
    elapsed = time.perf_counter() - start
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('evalue')}")
    return elapsed


def one_run(tree: str, env_extra: dict[str, str]) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYI_")}
    data = tempfile.mkdtemp(prefix="payi-bench-load-")
    env.update(PYTHONPATH=tree, PAYI_NOTEBOOK_DATA_DIR=data, PYTHONUNBUFFERED="1", **env_extra)
    manager = kernel_manager()
    manager.start_kernel(env=env, cwd=data)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        _timed(client, "1")  # the kernel is up and idle
        load = _timed(client, "%load_ext payi_notebook")
        first = _timed(client, CALL)
        _timed(client, "import payi_notebook as pn; pn.flush(60)")
        return load, first
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", required=True, help="a checkout of the old code to compare (its PYTHONPATH)")
    parser.add_argument("--after", default=str(HERE), help="tree of the new code (PYTHONPATH)")
    parser.add_argument("--key", action="store_true", help="give the kernel a key (a sandbox started here plays Pay-i)")
    args = parser.parse_args()
    extra: dict[str, str] = {}
    sandbox = None
    if args.key:
        from payi_notebook import sandbox as sandbox_mod

        sandbox = sandbox_mod.start()
        extra = {
            "PAYI_API_KEY": sandbox.api_key,
            "PAYI_BASE_URL": sandbox.base_url,
            "PAYI_SANDBOX_PROVIDER_URL": sandbox.provider_url,
        }
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    try:
        for run in range(args.runs):
            for name, tree in (("before", args.before), ("after", args.after))[:: 1 if run % 2 == 0 else -1]:
                results[name].append(one_run(tree, extra))
                load, first = results[name][-1]
                print(f"run {run + 1} {name:6}: load {load:6.3f} s  first tracked call {first:6.3f} s", flush=True)
    finally:
        if sandbox is not None:
            sandbox.stop()
    print(f"\nmedian of {args.runs} fresh kernels ({'with a key' if args.key else 'no key: own sandbox'}):")
    print(f"{'':8}{'%load_ext':>12}{'first call':>12}{'load + first':>14}")
    medians = {}
    for name, rows in results.items():
        load = statistics.median(r[0] for r in rows)
        first = statistics.median(r[1] for r in rows)
        both = statistics.median(r[0] + r[1] for r in rows)
        medians[name] = (load, first, both)
        print(f"{name:8}{load:11.3f}s{first:11.3f}s{both:13.3f}s")
    b, a = medians["before"], medians["after"]
    print(f"{'after/before':8}{a[0] / b[0]:11.2f}x{a[1] / b[1]:11.2f}x{a[2] / b[2]:13.2f}x")


if __name__ == "__main__":
    main()
