"""What proxy mode costs: the sandbox's proxy hop, and capture's rewriting, side by side.

Three variants of the same ``openai`` chat completion, interleaved, medians:

- direct: straight to the provider emulator;
- proxied by hand: the client's ``base_url`` is the sandbox's proxy route (no capture);
- proxied by capture: the direct client inside ``pn.track(proxy=True)`` — capture rewrites
  the request to the proxy route.

hop = proxied-by-hand − direct (target <= 3 ms on loopback; Pay-i quotes 10-50 ms for its
hosted proxy); capture = proxied-by-capture − proxied-by-hand (target <= 100 us). The
sandbox runs in a child process. A benchmark, not a test: machines here are noisy.

    python bench/proxy_overhead.py [--calls 400]
"""

from __future__ import annotations

import contextvars
import statistics
import time
from collections.abc import Callable

from _common import loopback_run
from capture_overhead import MESSAGES
from openai import OpenAI


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    args, sandbox, env = loopback_run(__doc__, 400)
    import payi_notebook as pn

    try:
        pn.instrument()
        provider = env["PAYI_SANDBOX_PROVIDER_URL"]
        direct = OpenAI(base_url=f"{provider}/v1", api_key="sk-bench", max_retries=0)
        with pn.track(use_case_name="bench", proxy=True) as scope:
            proxied = contextvars.copy_context()
        # the same headers capture sends, so the sandbox does the same work for both
        same_context = {**scope.context.proxy_headers(), "xProxy-api-key": env["PAYI_API_KEY"]}
        by_hand = OpenAI(
            base_url=pn.openai_url(),
            api_key="sk-bench",
            max_retries=0,
            default_headers={**same_context, "xProxy-Provider-BaseUri": provider},
        )

        def call(client: OpenAI) -> Callable[[], object]:
            return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        variants: dict[str, Callable[[], object]] = {
            "direct": call(direct),
            "proxied by hand": call(by_hand),
            "proxied by capture": lambda: proxied.run(call(direct)),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(20):
            for fn in variants.values():
                fn()
        order = list(variants)
        for i in range(args.calls):
            for name in order[i % 3 :] + order[: i % 3]:  # rotate who goes first
                start = time.perf_counter()
                variants[name]()
                samples[name].append(time.perf_counter() - start)

        print(f"{args.calls} calls per variant, interleaved; medians\n")
        for name, values in samples.items():
            print(f"  {name:<20} {median_us(values):9.1f} us")
        hop = median_us(samples["proxied by hand"]) - median_us(samples["direct"])
        capture = median_us(samples["proxied by capture"]) - median_us(samples["proxied by hand"])
        print("\ntargets:")
        print(f"  proxy hop (sandbox, loopback)     {hop / 1000:7.2f} ms   target <= 3 ms (Pay-i hosted: 10-50 ms)")
        print(f"  capture in proxy mode             {capture:7.1f} us   target <= 100 us")
        print(f"\n{pn.flush(60)} (proxied calls are never ingested)")
    finally:
        pn.instrument().stop(timeout=5)
        sandbox.stop()


if __name__ == "__main__":
    main()
