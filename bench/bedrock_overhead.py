"""What capture adds to a boto3 Bedrock Converse call: bare vs inside ``pn.track()``, side by side.

Same method as ``capture_overhead.py`` (whose helpers it uses): the sandbox and emulator run
in a child process, calls alternate bare/tracked, medians are compared.

1. loopback: real boto3 ``converse`` against the emulator over HTTP (botocore, urllib3);
2. in-memory: the same client with botocore's HTTP session swapped for one that answers at
   once (below the hook, so the difference is capture's own cost: the botocore send hook,
   the route match, the exchange and the journal append);
3. the hook alone: one signed request replayed through ``Endpoint._send`` (the patched
   method) over that session, so boto3's own serialising, signing and parsing (~1 ms) do
   not dilute the figure;
4. streaming: ``converse_stream`` time to the first event, bare vs tracked.

Targets (issue #12): added time <= 100 us per call and <= 5% of a loopback call.

    python bench/bedrock_overhead.py [--calls 300]
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from _common import loopback_run
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from capture_overhead import interleaved, report

MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
MESSAGES = [
    {
        "role": "user",
        "content": [{"text": "Summarise the quarterly report in two short lines, please."}],
    }
]
CANNED = json.dumps(
    {
        "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 21, "outputTokens": 2, "totalTokens": 23},
        "metrics": {"latencyMs": 1},
    }
).encode()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        yield self._body


class CannedSession:
    """A botocore HTTP session answering every request with one Converse reply, no network."""

    def send(self, request: Any) -> AWSResponse:
        headers = {
            "content-type": "application/json",
            "x-amzn-requestid": "bench-0000",
            "content-length": str(len(CANNED)),
        }
        response = AWSResponse(request.url, 200, headers, _Raw(CANNED))
        response.content  # noqa: B018 - read at once, as URLLib3Session does for non-streaming calls
        return response

    def close(self) -> None:
        pass


def client(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="AKIABENCH",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}),
    )


def main() -> None:
    args, sandbox, env = loopback_run(__doc__, 300)
    import payi_notebook as pn

    try:
        pn.instrument()
        loop = client(env["PAYI_SANDBOX_PROVIDER_URL"])
        memory = client("https://bedrock-runtime.us-east-1.amazonaws.com")
        memory._endpoint.http_session = CannedSession()

        def converse(c: Any) -> Callable[[], object]:
            return lambda: c.converse(modelId=MODEL, messages=MESSAGES)

        signed: list[Any] = []
        memory.meta.events.register("before-send.bedrock-runtime.Converse", lambda request, **_: signed.append(request))
        memory.converse(modelId=MODEL, messages=MESSAGES)
        memory.meta.events.unregister("before-send.bedrock-runtime.Converse")
        endpoint = memory._endpoint

        def send() -> object:
            return endpoint._send(signed[0])

        def first_event(c: Any) -> Callable[[], object]:
            def run() -> float:
                start = time.perf_counter()
                stream = iter(c.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
                next(stream)
                elapsed = time.perf_counter() - start
                for _ in stream:
                    pass
                return elapsed

            return run

        with pn.track(use_case_name="bench"):
            inside = contextvars.copy_context()

        def tracked(fn: Callable[[], object]) -> Callable[[], object]:
            return lambda: inside.run(fn)

        for _ in range(20):
            converse(loop)()
            tracked(converse(loop))()
            tracked(converse(memory))()
        print(f"{args.calls} calls per variant, interleaved; medians; Pay-i drained between rows\n")
        sent = 0

        def phase(
            label: str,
            bare: Callable[[], object],
            with_capture: Callable[[], object],
            n: int,
        ) -> tuple[float, float]:
            nonlocal sent
            pn.flush(120)
            figures = report(label, *interleaved(bare, with_capture, n))
            sent += pn.flush(120).sent
            return figures

        loop_added, loop_ratio = phase(
            "loopback converse (emulator)",
            converse(loop),
            tracked(converse(loop)),
            args.calls,
        )
        mem_added, _ = phase(
            "in-memory converse",
            converse(memory),
            tracked(converse(memory)),
            args.calls * 5,
        )
        hook_added, _ = phase("  the send hook alone", send, tracked(send), args.calls * 20)
        _, ttft_ratio = phase(
            "converse_stream: 1st event",
            first_event(loop),
            tracked(first_event(loop)),
            args.calls,
        )
        print(f"\ndelivered to the sandbox during the measurements: {sent} events")
        print("\ntargets:")
        print(f"  capture cost per Converse call (in-memory) {mem_added * 1e6:7.1f} us   target <= 100 us")
        print(f"  ... of which the botocore send hook        {hook_added * 1e6:7.1f} us")
        print(
            f"  added on a loopback Converse call          {loop_added * 1e6:7.1f} us = {100 * (loop_ratio - 1):5.2f}%   target <= 5%"
        )
        print(f"  converse_stream time to the first event    ratio {ttft_ratio:6.3f}")
    finally:
        pn.instrument().stop(timeout=5)
        sandbox.stop()


if __name__ == "__main__":
    main()
