"""What a budget adds to a captured call: tracked vs tracked-under-a-budget, side by side.

In-memory, as ``capture_overhead.py``'s second measurement: the real ``openai`` SDK over an
in-process transport that answers at once, so the difference is our own work. Three
variants alternate call by call: bare, tracked (a ``pn.track()`` scope) and budgeted (the
same scope with ``budget=`` large enough never to refuse). Then the budget step's parts
alone: the request bound, reserve + settle on a ``LocalBudget``, and the actual cost.

The budgeted call also builds its event on the request path (its actual cost settles the
reservation at once); tracked calls defer that to the flusher, so "budget adds" includes
work moved, not only work added.

Target (issue #13): the reservation adds <= 20 us per call.

    python bench/budget_overhead.py [--calls 2000]
"""

from __future__ import annotations

import contextvars
import statistics
import time
from collections.abc import Callable

import httpx2
import orjson
from _common import loopback_run
from capture_overhead import MESSAGES, canned_transport, timed
from openai import OpenAI


def median_us(fn: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def guard_parts(raw: bytes, budgeted: object, tracked: object, n: int) -> dict[str, float]:
    """Time the budget step on real ``Exchange`` objects, with no SDK or transport around it."""
    from payi_notebook.budgets.guard import settle
    from payi_notebook.capture import hooks
    from payi_notebook.capture.exchange import Exchange

    config = hooks._config
    assert config is not None
    route = config.routes.match("https", "api.openai.com", None, "/v1/chat/completions")
    url = "https://api.openai.com/v1/chat/completions"
    response = canned_transport().handle_request(httpx2.Request("POST", url))
    body = response.read()

    def exchange(scope: object) -> Exchange:
        return Exchange(config, scope, route, httpx2.Request("POST", url, content=raw))  # type: ignore[arg-type]

    def finished(scope: object) -> Exchange:
        x = exchange(scope)
        x.status_code, x.headers, x.body = 200, response.headers, body
        return x

    pool = [finished(budgeted) for _ in range(n)]
    built = iter(pool)
    for x in pool[: n // 2]:
        x.event()

    def settle_built() -> None:
        settle(next(built))

    first = median_us(settle_built, n // 2)
    rest = iter(pool[n // 2 :])
    both = median_us(lambda: settle(next(rest)), n - n // 2)
    return {
        "Exchange() without a budget": median_us(lambda: exchange(tracked), n),
        "Exchange() with a budget (admit)": median_us(lambda: exchange(budgeted), n),
        "admit (Exchange with budget - without)": median_us(lambda: exchange(budgeted), n) - median_us(lambda: exchange(tracked), n),
        "settle (event already built)": first,
        "event build moved onto the call": both - first,
    }


def main() -> None:
    args, sandbox, env = loopback_run(__doc__, 2000)
    import payi_notebook as pn
    from payi_notebook.budgets import LocalBudget
    from payi_notebook.budgets.bounds import actual_cost, request_bound

    try:
        pn.instrument()
        memory = OpenAI(base_url="https://api.openai.com/v1", api_key="sk-bench", http_client=httpx2.Client(transport=canned_transport()))

        def call() -> object:
            return memory.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=64)

        with pn.track(use_case_name="bench") as tracked_scope:
            tracked_ctx = contextvars.copy_context()
        with pn.track(use_case_name="bench", budget=1e9) as scope:
            budget_ctx = contextvars.copy_context()

        variants = {"bare": call, "tracked": lambda: tracked_ctx.run(call), "budgeted": lambda: budget_ctx.run(call)}
        for _ in range(200):
            for fn in variants.values():
                fn()
        samples: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for i in range(args.calls):
            for name in order[i % 3 :] + order[: i % 3]:  # rotate so drift hits every variant alike
                samples[name].append(timed(variants[name]))
        med = {name: statistics.median(s) * 1e6 for name, s in samples.items()}
        for name in variants:
            print(f"{name:<10} {med[name]:9.1f} us per call (median of {args.calls})")
        added = med["budgeted"] - med["tracked"]
        print(f"budget adds {added:7.1f} us per call over tracked (ratio {med['budgeted'] / med['tracked']:.3f}); target <= 20 us")

        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64}
        raw = orjson.dumps(body)
        budget = LocalBudget(1e9, "bench")
        keys = iter(range(10**9))

        def reserve_settle() -> None:
            key = str(next(keys))
            budget.reserve(key, 1e-4)
            budget.settle(key, 5e-5)

        units = {"text": {"input": 21, "output": 2}}
        n = args.calls * 5
        exchange_us = guard_parts(raw, scope, tracked_scope, n)
        print("the budget step on one captured call (median, same request and response):")
        for label, us in exchange_us.items():
            print(f"  {label:<44} {us:6.2f} us")
        print(f"  => the reservation adds {exchange_us['admit (Exchange with budget - without)'] + exchange_us['settle (event already built)']:.2f} us per call"
              f" (+ {exchange_us['event build moved onto the call'] :.2f} us of event building moved, not added); target <= 20 us")
        print("parts (median):")
        print(f"  parse + request_bound  {median_us(lambda: request_bound('openai', 'chat', orjson.loads(raw), raw), n):6.2f} us")
        print(f"  reserve + settle       {median_us(reserve_settle, n):6.2f} us")
        print(f"  actual_cost            {median_us(lambda: actual_cost('system.openai', 'gpt-4o-mini', units), n):6.2f} us")
        print(f"  (budget after the run: {scope.budget!r})")
        print(pn.flush(60))
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
